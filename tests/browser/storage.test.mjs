// tests/browser/storage.test.mjs — the dashboard's Storage page (#/storage) in headless Debian chromium
// driven by playwright-core, against a real daemon. Started by tests/e2e/test_dashboard.py:
//   node storage.test.mjs BASE_URL ARTIFACT_DIR
// Uploads a CIFAR-10 batch through POST /v1/files, opens #/storage: the disk line, the admin's usage row
// (uploads = the file's bytes), the upload among the largest items; its Delete button asks for
// confirmation: dismissing keeps it, accepting deletes it (GET /v1/files/ID then answers 404) and the
// row goes. Screenshots go to ARTIFACT_DIR. Exits 0 on success, 1 with a reason otherwise.
import { chromium } from 'playwright-core';
import { check, log } from './report.mjs';
import fs from 'node:fs';
import path from 'node:path';

const BASE = process.argv[2];
const ART = process.argv[3] || path.resolve('artifacts');
const TOKEN = process.env.CT_TOKEN || 'ct-test-token-123';
const CHROMIUM = process.env.CT_CHROMIUM || '/usr/bin/chromium';
const T = 30_000;

if (!BASE) { console.error('usage: node storage.test.mjs BASE_URL [ARTIFACT_DIR]'); process.exit(2); }
fs.mkdirSync(ART, { recursive: true });


async function upload() {
  const rec = new Uint8Array(40 * 3073);
  for (let i = 0; i < 40; i++) {
    rec[i * 3073] = i % 10;
    for (let k = 1; k < 3073; k++) rec[i * 3073 + k] = (i * 31 + k * 7) & 255;
  }
  const form = new FormData();
  form.append('purpose', 'fine-tune');
  form.append('file', new Blob([rec]), 'data_batch_1.bin');
  const r = await fetch(`${BASE}/v1/files`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` }, body: form });
  const j = await r.json();
  if (!r.ok) throw new Error(`upload: ${r.status} ${JSON.stringify(j)}`);
  return j;
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
let page;
try {
  const f = await upload();
  log('uploaded', f.id, f.bytes);
  page = await (await browser.newContext()).newPage();
  await page.goto(`${BASE}/?token=${encodeURIComponent(TOKEN)}#/storage`);
  await page.waitForSelector(`tr[data-item="${f.id}"]`, { timeout: T });
  check(/free of/.test(await page.textContent('#disk-line')), 'the disk line says how much is free');
  const usage = await page.textContent('#storage tr[data-user]');
  check(usage.includes('120.0 KiB'), `the usage row counts the upload (${usage.trim()})`);
  await page.screenshot({ path: path.join(ART, 'storage.png'), fullPage: true });

  let asked = '';
  page.once('dialog', (d) => { asked = d.message(); d.dismiss(); });
  await page.click(`tr[data-item="${f.id}"] button`);
  await page.waitForTimeout(300);
  check(asked.includes(f.id) && asked.includes('cannot be undone'), 'Delete asks for confirmation naming the item');
  check((await fetch(`${BASE}/v1/files/${f.id}`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status === 200,
    'dismissed: the upload is kept');

  page.once('dialog', (d) => d.accept());
  await page.click(`tr[data-item="${f.id}"] button`);
  await page.waitForSelector(`tr[data-item="${f.id}"]`, { state: 'detached', timeout: T });
  check((await page.textContent('#notice')).includes(`Deleted upload ${f.id}`), 'the status line says it was deleted');
  check((await fetch(`${BASE}/v1/files/${f.id}`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status === 404,
    'accepted: the upload is gone from the API');
  await page.screenshot({ path: path.join(ART, 'storage-after.png'), fullPage: true });
  console.log('storage: all checks passed');
} catch (e) {
  console.error(e.stack || String(e));
  if (page) await page.screenshot({ path: path.join(ART, 'storage-failed.png'), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
