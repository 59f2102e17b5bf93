// tests/browser/dashboard.test.mjs — the dashboard in a real headless browser (Debian chromium driven by
// playwright-core) against a real daemon running real tiny jobs. Started by tests/e2e/test_dashboard.py:
//   node dashboard.test.mjs BASE_URL ARTIFACT_DIR
// It creates job A (long enough to be cancelled while running) and job B (short, queued behind A with one
// worker), then checks: sign-in keeps the token in sessionStorage and every API request carries
// `Authorization: Bearer <token>`; the overview shows A running with a progress bar and B queued with a
// position and an estimated start; A's page gains chart points while A runs, by server-sent events and
// (second tab, ?live=poll) by polling the downsampled metrics; the page fits a phone-width screen; the
// cancel button cancels A; B then finishes and the overview shows its accuracies; the compare page
// overlays A and B. Screenshots go to ARTIFACT_DIR. Exits 0 on success, 1 with a reason otherwise.
import { chromium } from 'playwright-core';
import { check, log } from './report.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BASE = process.argv[2];
const ART = process.argv[3] || path.resolve('artifacts');
const TOKEN = process.env.CT_TOKEN || 'ct-test-token-123';
const CHROMIUM = process.env.CT_CHROMIUM || '/usr/bin/chromium';
const SANITIZED = process.env.CT_SANITIZED === '1'; // daemon under ASan/UBSan: ~3x slower, fewer images
const T = SANITIZED ? 120_000 : 60_000; // longest wait for any one thing

if (!BASE) { console.error('usage: node dashboard.test.mjs BASE_URL [ARTIFACT_DIR]'); process.exit(2); }
fs.mkdirSync(ART, { recursive: true });


async function apiCall(method, p, body) {
  const r = await fetch(BASE + p, {
    method, headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` },
    body: body && JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(j)}`);
  return j;
}

function tinyJob(epochs, suffix, method = 'core_tuning') {
  return {
    model: 'resnet20', training_file: 'fashion-mnist-train', seed: 7, suffix,
    method: { type: method, [method]: { hyperparameters: { n_epochs: epochs, batch_size: 32, gradient_accumulation_steps: 1, threads: 1 } } },
    architecture: { in_channels: 1, image_size: 28 },
    data: { train_limit: SANITIZED ? 128 : 256, valid_limit: SANITIZED ? 64 : 128, augment: false },
  };
}

const points = (page) => page.$eval('figure[data-metric="train_loss"]', (f) => Number(f.dataset.points));

const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coretuned-chromium-'));
let ctx = null;
let page = null;
let failed = null;
const pageErrors = [];
try {
  const A = await apiCall('POST', '/v1/fine_tuning/jobs', tinyJob(40, 'long'));
  const B = await apiCall('POST', '/v1/fine_tuning/jobs', tinyJob(2, 'short', 'ce_tuning'));
  log('created', A.id, B.id);

  ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  const unauthorized = [];
  let apiRequests = 0;
  ctx.on('request', (r) => {
    const u = new URL(r.url());
    if (!u.pathname.startsWith('/v1/') && u.pathname !== '/readyz') return;
    apiRequests++;
    if (r.headers().authorization !== `Bearer ${TOKEN}`) unauthorized.push(`${r.method()} ${u.pathname}`);
  });

  // ---- sign in
  await page.goto(BASE + '/', { waitUntil: 'load' });
  await page.waitForSelector('#signin #token', { timeout: T });
  check(await page.evaluate(() => typeof window.Chart === 'function'), 'Chart.js (libjs-chart.js) loaded');
  await page.fill('#token', TOKEN);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#overview', { timeout: T });
  const stored = await page.evaluate((k) => [sessionStorage.getItem(k), localStorage.length], 'coretuned.token');
  check(stored[0] === TOKEN && stored[1] === 0, 'token kept in sessionStorage only');

  // ---- overview: A running with a progress bar, B queued with a position and an estimated start
  const rowA = `#overview tr[data-job="${A.id}"]`;
  await page.waitForSelector(`${rowA} progress`, { timeout: T });
  await page.waitForSelector(`#overview tr[data-job="${B.id}"]`, { timeout: T });
  const rowB = await page.textContent(`#overview tr[data-job="${B.id}"]`);
  check(/#1/.test(rowB) && /≈/.test(rowB), `B queued with position and estimated start (${rowB.trim()})`);

  // ---- job page: curves grow while the job runs (SSE)
  await page.click(`${rowA} a`);
  await page.waitForSelector('#live[data-mode="sse"]', { timeout: T });
  await page.waitForFunction(() => Number(document.querySelector('figure[data-metric="train_loss"]').dataset.points) >= 2, null, { timeout: T });
  const n1 = await points(page);
  await page.waitForFunction((n) => Number(document.querySelector('figure[data-metric="train_loss"]').dataset.points) >= n + 3, n1, { timeout: T });
  const n2 = await points(page);
  const drawn = await page.evaluate(() => {
    const c = window.Chart.getChart(document.querySelector('figure[data-metric="train_loss"] canvas'));
    return c ? c.data.datasets[0].data.length : -1;
  });
  check(n2 > n1 && drawn >= n2 - 1, `train-loss chart gained points while running by SSE (${n1} -> ${n2}, ${drawn} drawn)`);
  check((await page.$$('figure.chart')).length === 6, 'six curves: train, CE, contrastive, lr, valid loss, valid accuracy');
  check(/batch_size/.test(await page.textContent('#hyper')), 'effective hyper-parameters shown');
  await page.screenshot({ path: path.join(ART, 'dashboard-job.png'), fullPage: true });

  // ---- fallback: incremental polling of the downsampled metrics endpoint
  const poller = await ctx.newPage();
  await poller.goto(`${BASE}/#/jobs/${encodeURIComponent(A.id)}?live=poll`);
  await poller.fill('#signin #token', TOKEN); // sessionStorage is per tab: a new tab signs in again
  await poller.click('#signin button[type=submit]');
  await poller.waitForSelector('#live[data-mode="poll"]', { timeout: T });
  await poller.waitForFunction(() => Number(document.querySelector('figure[data-metric="train_loss"]').dataset.points) >= 1, null, { timeout: T });
  const p1 = await points(poller);
  await poller.waitForFunction((n) => Number(document.querySelector('figure[data-metric="train_loss"]').dataset.points) > n, p1, { timeout: T });
  check(true, `polling fallback gained points too (${p1} -> ${await points(poller)})`);
  await poller.close();

  // ---- phone width
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `no sideways scrolling at 390 px (overflow ${overflow}px)`);
  await page.screenshot({ path: path.join(ART, 'dashboard-phone.png'), fullPage: false });
  await page.setViewportSize({ width: 1280, height: 900 });

  // ---- cancel
  page.once('dialog', (d) => d.accept());
  await page.click('#cancel');
  await page.waitForSelector('#job-status[data-status="cancelled"]', { timeout: T });
  check((await apiCall('GET', `/v1/fine_tuning/jobs/${A.id}`)).status === 'cancelled', 'the cancel button cancelled the job');
  await page.waitForSelector('#live[data-mode="ended"]', { timeout: T });
  check(await page.isDisabled('#cancel'), 'cancel disabled once cancelled');

  // ---- B runs next and finishes; the overview shows its accuracies
  await page.click('nav a[data-nav="jobs"]');
  await page.waitForSelector(`#overview tr[data-job="${B.id}"] .badge[data-status="succeeded"]`, { timeout: T });
  const finB = await page.textContent(`#overview tr[data-job="${B.id}"]`);
  check(/\d+\.\d %.*\d+\.\d %/.test(finB), `finished B shows best and final accuracy (${finB.trim()})`);

  // ---- compare A (core-tuning, cancelled) with B (CE-tuning)
  await page.goto(`${BASE}/#/compare?ids=${A.id},${B.id}&metric=train_loss`);
  await page.waitForSelector('figure.chart.big[data-series="2"]', { timeout: T });
  const sets = await page.evaluate(() => window.Chart.getChart(document.querySelector('figure.big canvas')).data.datasets.map((d) => d.data.length));
  check(sets.length === 2 && sets.every((n) => n > 0), `compare overlays two jobs' curves (${sets})`);
  await page.screenshot({ path: path.join(ART, 'dashboard-compare.png'), fullPage: true });

  check(apiRequests > 10 && unauthorized.length === 0,
    `every one of ${apiRequests} API requests sent the bearer token${unauthorized.length ? `; missing: ${unauthorized.slice(0, 5)}` : ''}`);
  check(pageErrors.length === 0, `no page errors${pageErrors.length ? `: ${pageErrors.slice(0, 3)}` : ''}`);
} catch (e) {
  failed = e;
  if (page) await page.screenshot({ path: path.join(ART, 'dashboard-failure.png'), fullPage: true }).catch(() => {});
} finally {
  if (ctx) await ctx.close().catch(() => {});
  fs.rmSync(userDir, { recursive: true, force: true });
}
if (failed) {
  console.error(`FAIL ${failed.stack || failed}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join('\n')}`);
  process.exit(1);
}
log('dashboard: all checks passed');
