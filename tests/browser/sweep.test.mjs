// tests/browser/sweep.test.mjs — the dashboard's sweep pages (#/sweeps, #/sweeps/ID) in headless Debian
// chromium driven by playwright-core, against a real daemon. Started by tests/e2e/test_dashboard.py:
//   node sweep.test.mjs BASE_URL ARTIFACT_DIR            the real sweep API: a 2-trial grid sweep of tiny jobs
//   node sweep.test.mjs BASE_URL ARTIFACT_DIR --stub     the sweep API stubbed in the browser (page.route)
// Real: creates the sweep through POST /v1/fine_tuning/sweeps, opens it from the Sweeps list while it runs
// (live by SSE), waits for it to succeed, then checks the leaderboard (one row per trial, ranked by
// validation accuracy, the API's best marked '*', each job id linking to its job page), the chart (one
// dataset per finished trial, each with one point per epoch) and the trial's job page linking back.
// Stub: canned sweep objects per the API contract move from running to succeeded while the page is open
// (the held event stream is then released), so the same checks run without the daemon's sweep API; the
// polling fallback (?live=poll) and a phone-width screen are checked there too.
// Screenshots go to ARTIFACT_DIR. Exits 0 on success, 1 with a reason otherwise.
import { chromium } from 'playwright-core';
import { check, log } from './report.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BASE = process.argv[2];
const ART = process.argv[3] || path.resolve('artifacts');
const STUB = process.argv.includes('--stub');
const TOKEN = process.env.CT_TOKEN || 'ct-test-token-123';
const CHROMIUM = process.env.CT_CHROMIUM || '/usr/bin/chromium';
const SANITIZED = process.env.CT_SANITIZED === '1';
const T = SANITIZED ? 240_000 : 120_000; // longest wait for any one thing (a real sweep runs two jobs)
const LR = 'method.core_tuning.hyperparameters.learning_rate';

if (!BASE) { console.error('usage: node sweep.test.mjs BASE_URL [ARTIFACT_DIR] [--stub]'); process.exit(2); }
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

function tinyJob(epochs) {
  return {
    model: 'resnet20', training_file: 'fashion-mnist-train', seed: 7,
    method: { type: 'core_tuning', core_tuning: { hyperparameters: { n_epochs: epochs, batch_size: 32, gradient_accumulation_steps: 1, threads: 1 } } },
    architecture: { in_channels: 1, image_size: 28 },
    data: { train_limit: SANITIZED ? 128 : 256, valid_limit: SANITIZED ? 64 : 128, augment: false },
  };
}

// ---------------------------------------------------------------- the stub (contract-shaped objects)

const trial = (index, job, lr, status, objective, bestEpoch = null) =>
  ({ index, job_id: job, parameters: { [LR]: lr }, seed: null, status, objective, best_epoch: bestEpoch });

function stubSweep(phase) {
  const running = phase === 'running';
  return {
    object: 'fine_tuning.sweep', id: 'ftsweep-stub', status: running ? 'running' : 'succeeded',
    created_at: Math.floor(Date.now() / 1000) - 60, finished_at: running ? null : Math.floor(Date.now() / 1000),
    owner: 'admin', job: tinyJob(2), parameters: { [LR]: [0.01, 0.05, 0.1] }, search: 'grid',
    objective: { metric: 'valid_accuracy', goal: 'maximize' }, max_parallel: 1, seeds: null, test_file: null,
    trials: running
      ? [trial(0, 'ftjob-s0', 0.01, 'succeeded', 0.8, 2), trial(1, 'ftjob-s1', 0.05, 'running', 0.5), trial(2, null, 0.1, 'pending', null)]
      : [trial(0, 'ftjob-s0', 0.01, 'succeeded', 0.8, 2), trial(1, 'ftjob-s1', 0.05, 'succeeded', 0.85, 2), trial(2, 'ftjob-s2', 0.1, 'succeeded', 0.7, 1)],
    best: running
      ? { job_id: 'ftjob-s0', parameters: { [LR]: 0.01 }, objective: 0.8, seeds: [], test_accuracy: null }
      : { job_id: 'ftjob-s1', parameters: { [LR]: 0.05 }, objective: 0.85, seeds: [], test_accuracy: null },
    fine_tuned_model: running ? null : 'ft:resnet20:sweep:ftjob-s1',
  };
}

function stubCurve(job, phase) {
  if (job === 'ftjob-s0') return { steps: [8, 16], values: [0.7, 0.8] };
  if (job === 'ftjob-s1') return phase === 'running' ? { steps: [8], values: [0.5] } : { steps: [8, 16], values: [0.5, 0.85] };
  return { steps: [8, 16], values: [0.6, 0.7] };
}

function stubEvents() {
  const evs = [
    ['trial_started', { index: 0, job_id: 'ftjob-s0', parameters: { [LR]: 0.01 }, seed: null }],
    ['trial_finished', { index: 0, job_id: 'ftjob-s0', status: 'succeeded', objective: 0.8 }],
    ['new_best', { index: 0, job_id: 'ftjob-s0', parameters: { [LR]: 0.01 }, objective: 0.8 }],
    ['trial_started', { index: 1, job_id: 'ftjob-s1', parameters: { [LR]: 0.05 }, seed: null }],
    ['trial_finished', { index: 1, job_id: 'ftjob-s1', status: 'succeeded', objective: 0.85 }],
    ['new_best', { index: 1, job_id: 'ftjob-s1', parameters: { [LR]: 0.05 }, objective: 0.85 }],
    ['trial_started', { index: 2, job_id: 'ftjob-s2', parameters: { [LR]: 0.1 }, seed: null }],
    ['trial_finished', { index: 2, job_id: 'ftjob-s2', status: 'succeeded', objective: 0.7 }],
    ['status', { status: 'succeeded' }],
  ];
  return evs.map(([type, data], i) => ({ object: 'fine_tuning.sweep.event', id: `ftevent-${i + 1}`, created_at: Math.floor(Date.now() / 1000),
    level: 'info', message: null, type, data }));
}

// Routes the sweep API (and the fake trial jobs' metrics) of ctx to the stub. Returns { finish() }: the
// sweep succeeds and the held event streams are answered with every event and `end`.
async function installStub(ctx) {
  let phase = 'running';
  let release;
  const finished = new Promise((r) => { release = r; });
  const json = (route, status, obj) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(obj) });
  await ctx.route(/\/v1\/fine_tuning\/sweeps(\/|\?|$)/, async (route) => {
    const req = route.request();
    const u = new URL(req.url());
    if (req.headers().authorization !== `Bearer ${TOKEN}`) return json(route, 401, { error: { message: 'no token', code: 'unauthorized' } });
    const parts = u.pathname.split('/').filter(Boolean); // v1 fine_tuning sweeps [id [events]]
    if (parts.length === 3) return json(route, 200, { object: 'list', data: [stubSweep(phase)], has_more: false });
    if (parts[3] !== 'ftsweep-stub') return json(route, 404, { error: { message: 'no such sweep', code: 'not_found' } });
    if (parts.length === 4) return json(route, 200, stubSweep(phase));
    if (parts[4] === 'events' && (req.headers().accept || '').includes('text/event-stream')) {
      await finished;
      const body = stubEvents().map((e) => `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join('')
        + 'event: end\ndata: {"sweep_id":"ftsweep-stub"}\n\n';
      return route.fulfill({ status: 200, contentType: 'text/event-stream', body });
    }
    if (parts[4] === 'events') {
      const after = Number((u.searchParams.get('after') || 'ftevent-0').split('-').pop());
      const evs = phase === 'running' ? stubEvents().slice(0, 4) : stubEvents();
      return json(route, 200, { object: 'list', data: evs.filter((e) => Number(e.id.split('-').pop()) > after), has_more: false });
    }
    return json(route, 404, { error: { message: 'no such route', code: 'not_found' } });
  });
  await ctx.route(/\/v1\/fine_tuning\/jobs\/ftjob-s\d\/metrics/, (route) => {
    const job = new URL(route.request().url()).pathname.split('/')[4];
    return json(route, 200, { object: 'fine_tuning.job.metrics', job_id: job, series: { valid_accuracy: stubCurve(job, phase) } });
  });
  return { finish() { phase = 'succeeded'; release(); } };
}

// ---------------------------------------------------------------- checks

const boardRows = (page) => page.$$eval('#leaderboard tbody tr', (trs) => trs.map((tr) => ({
  trial: Number(tr.dataset.trial), job: tr.dataset.job, rank: tr.dataset.rank, best: tr.classList.contains('best'),
  star: tr.cells[0].textContent.includes('*'), href: (tr.querySelector('a[href^="#/jobs/"]') || {}).hash || null,
  status: tr.querySelector('.badge').dataset.status,
})));

const chartSets = (page) => page.evaluate(() => {
  const c = window.Chart.getChart(document.querySelector('#sweep-chart canvas'));
  return c ? c.data.datasets.map((d) => ({ label: d.label, n: d.data.length })) : null;
});

async function signIn(page, url) {
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('#signin #token', { timeout: T });
  await page.fill('#token', TOKEN);
  await page.click('#signin button[type=submit]');
}

const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coretuned-chromium-'));
let ctx = null;
let page = null;
let failed = null;
const pageErrors = [];
try {
  let sweep = null;
  if (!STUB) {
    sweep = await apiCall('POST', '/v1/fine_tuning/sweeps', {
      job: tinyJob(2), parameters: { [LR]: [0.01, 0.05] }, search: 'grid',
      objective: { metric: 'valid_accuracy', goal: 'maximize' }, max_parallel: 2, suffix: 'dash',
    });
    log('created', sweep.id, `${sweep.trials.length} trials`);
  }
  ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const stub = STUB ? await installStub(ctx) : null;
  const id = STUB ? 'ftsweep-stub' : sweep.id;
  page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });

  // ---- the Sweeps list, from the nav
  await signIn(page, BASE + '/');
  await page.waitForSelector('#overview', { timeout: T });
  await page.click('nav a[data-nav="sweeps"]');
  await page.waitForSelector(`#sweeps tr[data-sweep="${id}"]`, { timeout: T });
  check(await page.getAttribute('nav a[data-nav="sweeps"]', 'aria-current') === 'page', 'Sweeps is the current nav entry');
  const listRow = await page.textContent(`#sweeps tr[data-sweep="${id}"]`);
  check(/max valid_accuracy/.test(listRow) && /of [23] finished/.test(listRow), `the list shows the sweep (${listRow.trim()})`);

  // ---- the sweep page while it runs: live by SSE, the running state shown
  await page.click(`#sweeps tr[data-sweep="${id}"] a`);
  // (a real sweep may already be over by now: its stream then replays and ends at once)
  await page.waitForSelector(STUB ? '#live[data-mode="sse"]' : '#live[data-mode="sse"], #live[data-mode="ended"]', { timeout: T });
  check(true, 'the sweep page goes live by server-sent events');
  if (STUB) {
    await page.waitForFunction(() => document.querySelector('#sweep-chart').dataset.series === '2', null, { timeout: T });
    const rows = await boardRows(page);
    check(rows.map((r) => `${r.trial}:${r.rank || '-'}${r.star ? '*' : ''}:${r.status}`).join(' ') === '0:1*:succeeded 1:-:running 2:-:pending',
      `running: the finished trial ranked and best, then the running and pending ones (${JSON.stringify(rows)})`);
    check(rows[2].href === null && rows[2].job === '', 'a pending trial has no job link');
    check((await page.textContent('#sweep-summary')).includes('3 (1 succeeded, 1 running, 1 pending)'), 'trial counts in the facts');
    await page.screenshot({ path: path.join(ART, 'dashboard-sweep-running.png'), fullPage: true });
    stub.finish();
  }

  // ---- finished: status, leaderboard, chart
  await page.waitForSelector('#sweep-status[data-status="succeeded"]', { timeout: T });
  await page.waitForSelector('#live[data-mode="ended"]', { timeout: T });
  const final = STUB ? stubSweep('succeeded') : await apiCall('GET', `/v1/fine_tuning/sweeps/${id}`);
  check(final.status === 'succeeded' && final.best, `the sweep succeeded with a best trial (${final.best && final.best.job_id})`);
  const n = final.trials.length;
  await page.waitForFunction((k) => document.querySelectorAll('#leaderboard tbody tr').length === k
    && document.querySelector('#sweep-chart').dataset.series === String(k), n, { timeout: T });
  const rows = await boardRows(page);
  check(rows.length === n && rows.every((r) => r.status === 'succeeded'), `one leaderboard row per trial, all succeeded (${rows.length})`);
  check(rows.map((r) => r.rank).join(',') === [...Array(n).keys()].map((i) => i + 1).join(','), `ranked 1..${n}`);
  const objective = new Map(final.trials.map((t) => [t.job_id, t.objective]));
  check(rows.every((r, i) => i === 0 || objective.get(rows[i - 1].job) >= objective.get(r.job)), 'sorted by validation accuracy, best first');
  const starred = rows.filter((r) => r.star);
  check(starred.length === 1 && starred[0].best && starred[0].job === final.best.job_id, `the API's best (${final.best.job_id}) is marked *`);
  check(rows.every((r) => r.href === `#/jobs/${encodeURIComponent(r.job)}`), 'each job id links to its job page');
  const names = await page.$$eval('#leaderboard tbody tr td.mono', (tds) => tds.map((td) => td.textContent));
  check(names.every((t) => /^learning_rate=0\.\d+$/.test(t)), `parameters by short name (${names})`);
  const sets = await chartSets(page);
  const finishedTrials = final.trials.filter((t) => t.job_id && ['succeeded', 'failed', 'cancelled'].includes(t.status));
  const epochs = STUB ? [2, 2, 2] : finishedTrials.map(() => 2);
  check(sets && sets.length === finishedTrials.length, `the chart has one dataset per finished trial (${sets && sets.length} of ${finishedTrials.length})`);
  check(sets.every((d, i) => d.n === epochs[i] || (STUB && d.n > 0)), `each curve has its validation points (${sets.map((d) => d.n)})`);
  check(sets.some((d) => d.label.endsWith('*')), 'the best trial\'s curve is labelled *');
  check(/valid_accuracy/.test(await page.textContent('#sweep-summary')), 'the objective is in the facts');
  check(await page.isDisabled('#cancel'), 'cancel disabled once the sweep is final');
  const logTypes = await page.$$eval('#log li', (lis) => lis.map((li) => li.dataset.type));
  check(logTypes.includes('trial_finished') && logTypes.includes('new_best'), `the event log lists the sweep's events (${logTypes.length})`);
  await page.screenshot({ path: path.join(ART, 'dashboard-sweep.png'), fullPage: true });

  // ---- phone width
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `no sideways scrolling at 390 px (overflow ${overflow}px)`);
  await page.setViewportSize({ width: 1280, height: 900 });

  if (STUB) {
    // ---- the polling fallback, in a second tab (sessionStorage is per tab: it signs in again)
    const poller = await ctx.newPage();
    poller.on('pageerror', (e) => pageErrors.push(String(e)));
    await signIn(poller, `${BASE}/#/sweeps/${id}?live=poll`);
    await poller.waitForSelector('#live[data-mode="ended"]', { timeout: T });
    await poller.waitForFunction(() => document.querySelector('#sweep-chart').dataset.series === '3', null, { timeout: T });
    check((await poller.$$eval('#log li', (l) => l.length)) === 9, 'polling read every event and ended');
    await poller.close();
    // ---- an unknown sweep
    await page.goto(`${BASE}/#/sweeps/ftsweep-nope`);
    await page.waitForFunction(() => /does not exist/.test(document.querySelector('#notice').textContent), null, { timeout: T });
    check(true, 'an unknown sweep says so');
    pageErrors.splice(0, pageErrors.length, ...pageErrors.filter((e) => !/404/.test(e))); // the browser logs the 404
  } else {
    // ---- a trial's job page links back to its sweep
    await page.click(`#leaderboard tr[data-job="${final.best.job_id}"] a[href^="#/jobs/"]`);
    await page.waitForSelector('#job-status[data-status="succeeded"]', { timeout: T });
    check(await page.getAttribute('#job-sweep', 'href') === `#/sweeps/${encodeURIComponent(id)}`, 'the trial\'s job page links to its sweep');
  }
  check(pageErrors.length === 0, `no page errors${pageErrors.length ? `: ${pageErrors.slice(0, 3)}` : ''}`);
} catch (e) {
  failed = e;
  if (page) await page.screenshot({ path: path.join(ART, 'dashboard-sweep-failure.png'), fullPage: true }).catch(() => {});
} finally {
  if (ctx) await ctx.close().catch(() => {});
  fs.rmSync(userDir, { recursive: true, force: true });
}
if (failed) {
  console.error(`FAIL ${failed.stack || failed}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join('\n')}`);
  process.exit(1);
}
log(`sweep dashboard${STUB ? ' (stub)' : ''}: all checks passed`);
