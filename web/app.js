// web/app.js — the coretuned dashboard: sign-in, the jobs overview (queue, running, finished), a job page
// with live curves, a comparison of several jobs, and hyper-parameter sweeps (a list, and a sweep page with
// its leaderboard and its trials' validation curves overlaid), and a Storage page (bytes on disk per user,
// the largest items, delete with confirmation). Plain ES module, no build step, no framework.
// Talks only to the daemon's REST API (docs/api.md) with `Authorization: Bearer <token>` on every request;
// the token is kept in sessionStorage (gone when the tab closes). Live updates read the server-sent event
// stream through fetch() (EventSource cannot send headers) and fall back to polling the events list and
// the LTTB-downsampled metrics endpoint (after_step=) when streaming is unavailable or keeps failing.
// Errors are shown in the page's status line; nothing is thrown past a view.

const TOKEN_KEY = 'coretuned.token';
const JOBS = '/v1/fine_tuning/jobs';
const SWEEPS = '/v1/fine_tuning/sweeps';
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);
const POLL_MS = 2000;
const MAX_CHART_POINTS = 4000;

// Metrics shown on the job page: train metrics come with every step, validation ones once per epoch.
const METRICS = [
  { name: 'train_loss', label: 'Train loss', from: 'metrics' },
  { name: 'ce_loss', label: 'CE loss', from: 'metrics' },
  { name: 'contrastive_loss', label: 'Contrastive loss', from: 'metrics' },
  { name: 'lr', label: 'Learning rate', from: 'metrics' },
  { name: 'valid_loss', label: 'Validation loss', from: 'validation' },
  { name: 'valid_accuracy', label: 'Validation accuracy', from: 'validation' },
];

// Status: a symbol and a word, never colour alone.
const STATUS = {
  validating_files: ['…', 'validating'],
  queued: ['⏳', 'queued'],
  running: ['▶', 'running'],
  paused: ['⏸', 'paused'],
  succeeded: ['✓', 'succeeded'],
  failed: ['✗', 'failed'],
  cancelled: ['■', 'cancelled'],
};

// Series styles for overlays: colour, dash pattern and point shape all differ.
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
const DASHES = [[], [6, 4], [2, 3], [10, 3, 2, 3], [1, 1], [12, 6]];
const POINTS = ['circle', 'rect', 'triangle', 'rectRot', 'cross', 'star'];

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);

function notice(text, kind = 'info') {
  const n = $('#notice');
  n.textContent = text || '';
  n.dataset.kind = kind;
}

function statusBadge(status) {
  const [sym, word] = STATUS[status] || ['?', status || 'unknown'];
  return h('span', { class: `badge st-${status}`, dataset: { status } }, h('span', { 'aria-hidden': 'true' }, sym), ' ', word);
}

function fmtNum(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(2);
  return String(Number(Number(v).toPrecision(digits)));
}

function fmtPct(v) {
  return v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)} %`;
}

function fmtDuration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—';
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function fmtTime(unix) {
  if (!unix) return '—';
  const d = new Date(unix * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

const now = () => Date.now() / 1000;
const methodOf = (job) => (job.method && job.method.type) || '—';

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders(extra) {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return Object.assign(t ? { Authorization: `Bearer ${t}` } : {}, extra || {});
}

async function api(method, path, { body, signal } = {}) {
  const opts = { method, headers: authHeaders({ Accept: 'application/json' }), signal, cache: 'no-store' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (r.status === 401 || r.status === 403) {
    signOut('The token was not accepted. Sign in again.');
    throw new ApiError(r.status, 'not signed in');
  }
  if (!r.ok) throw new ApiError(r.status, (data && data.error && data.error.message) || `HTTP ${r.status}`);
  return data;
}

async function listJobs(signal) {
  const jobs = [];
  let after = null;
  for (let page = 0; page < 10; page++) {
    const q = `${JOBS}?limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`;
    const r = await api('GET', q, { signal });
    jobs.push(...r.data);
    if (!r.has_more || !r.data.length) break;
    after = r.data[r.data.length - 1].id;
  }
  return jobs;
}

// Downloads with the Authorization header (a plain link cannot send it), then hands the bytes to the browser.
async function download(path, filename) {
  notice(`Downloading ${filename}…`);
  const r = await fetch(path, { headers: authHeaders() });
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { msg = (await r.json()).error.message; } catch { /* keep the status */ }
    throw new ApiError(r.status, msg);
  }
  const url = URL.createObjectURL(await r.blob());
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  notice(`Downloaded ${filename}.`);
}

// ---------------------------------------------------------------- server-sent events over fetch()

// Reads an event stream (a job's or a sweep's GET …/events?stream=true) and calls onEvent(type, data, id)
// for each event until the server ends the stream (resolves true after an `end` event, false if the
// connection closed without one). Throws on HTTP errors or network failure; abort through signal.
async function readEventStream(path, lastEventId, signal, onEvent) {
  const headers = authHeaders({ Accept: 'text/event-stream' });
  if (lastEventId) headers['Last-Event-ID'] = lastEventId;
  const r = await fetch(path, { headers, signal, cache: 'no-store' });
  if (!r.ok) throw new ApiError(r.status, `event stream: HTTP ${r.status}`);
  if (!r.body || !r.body.getReader) throw new ApiError(0, 'streaming responses are not supported');
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let ev = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        if (ev.data.length || ev.event) {
          const type = ev.event || 'message';
          if (type === 'end') { reader.cancel().catch(() => {}); return true; }
          let data = null;
          try { data = JSON.parse(ev.data.join('\n')); } catch { data = null; }
          if (data) onEvent(type, data, ev.id);
        }
        ev = { data: [] };
        continue;
      }
      if (line.startsWith(':')) continue; // heartbeat comment
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? '' : line.slice(colon + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'data') ev.data.push(val);
      else if (field === 'event') ev.event = val;
      else if (field === 'id') ev.id = val;
    }
  }
}

// ---------------------------------------------------------------- charts (Chart.js from libjs-chart.js)

function chartLib() {
  if (!window.Chart) throw new Error('Chart.js did not load (install Debian package libjs-chart.js)');
  return window.Chart;
}

function lineChart(canvas, { datasets, yLabel, percent, logY }) {
  const Chart = chartLib();
  return new Chart(canvas, {
    type: 'line',
    data: { datasets },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      scales: {
        x: { type: 'linear', title: { display: true, text: 'step' }, ticks: { maxTicksLimit: 6 } },
        y: {
          type: logY ? 'logarithmic' : 'linear',
          title: { display: !!yLabel, text: yLabel || '' },
          suggestedMin: percent ? 0 : undefined,
          suggestedMax: percent ? 1 : undefined,
          ticks: { maxTicksLimit: 6, callback: (v) => (percent ? `${Math.round(v * 100)}%` : fmtNum(v, 3)) },
        },
      },
      plugins: {
        legend: { display: datasets.length > 1, labels: { usePointStyle: true, boxWidth: 24 } },
        decimation: { enabled: false },
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${percent ? fmtPct(c.parsed.y) : fmtNum(c.parsed.y)} @ step ${c.parsed.x}` } },
      },
    },
  });
}

function seriesStyle(i, sparse) {
  const c = PALETTE[i % PALETTE.length];
  return {
    borderColor: c,
    backgroundColor: c,
    borderDash: DASHES[i % DASHES.length],
    pointStyle: POINTS[i % POINTS.length],
    pointRadius: sparse ? 3 : 0,
    pointHoverRadius: 4,
    borderWidth: 1.5,
    tension: 0,
  };
}

// A small legend swatch drawn with SVG: colour, dash and marker, so lines differ without colour too.
function lineKey(i, label = i + 1) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', '40'); svg.setAttribute('height', '12'); svg.setAttribute('aria-hidden', 'true');
  const l = document.createElementNS(ns, 'line');
  for (const [k, v] of Object.entries({ x1: 0, y1: 6, x2: 40, y2: 6, stroke: PALETTE[i % PALETTE.length], 'stroke-width': 2,
    'stroke-dasharray': DASHES[i % DASHES.length].join(' ') || 'none' })) l.setAttribute(k, v);
  svg.append(l);
  return h('span', { class: 'key' }, svg, ` ${label} (${POINTS[i % POINTS.length]})`);
}

// Keeps a dataset bounded: past the cap, every other point of the older half goes (ends are kept).
function capPoints(data) {
  if (data.length <= MAX_CHART_POINTS) return;
  const half = data.length >> 1;
  const kept = data.slice(0, half).filter((_, i) => i % 2 === 0);
  data.splice(0, half, ...kept);
}

// ---------------------------------------------------------------- views and routing

let current = null; // { cleanup() } of the mounted view

function route() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || '') };
}

function mount() {
  if (current) { try { current.cleanup(); } catch { /* already gone */ } current = null; }
  const view = $('#view');
  view.replaceChildren();
  notice('');
  const signedIn = !!sessionStorage.getItem(TOKEN_KEY);
  $('#signout').hidden = !signedIn;
  if (!signedIn) { current = signInView(view); return; }
  const { parts, params } = route();
  for (const a of document.querySelectorAll('[data-nav]')) {
    const on = (parts[0] || 'jobs') === a.dataset.nav || (parts[0] === 'jobs' && a.dataset.nav === 'jobs');
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (parts[0] === 'jobs' && parts[1]) current = jobView(view, parts[1], params);
  else if (parts[0] === 'compare') current = compareView(view, params);
  else if (parts[0] === 'sweeps' && parts[1]) current = sweepView(view, parts[1], params);
  else if (parts[0] === 'sweeps') current = sweepsView(view);
  else if (parts[0] === 'storage') current = storageView(view);
  else current = overviewView(view);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  mount();
  if (message) notice(message, 'error');
}

// ---- sign in

let signInError = '';   // shown by the next sign-in form (a rejected ?token= link)

// Keeps the token only once the daemon accepts it; returns '' (signed in, view mounted) or the error.
async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await api('GET', `${JOBS}?limit=1`);
    mount();
    return '';
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    return e.status === 401 || e.status === 403 ? 'This token was not accepted.' : `Cannot reach the daemon: ${e.message}`;
  }
}

function signInView(view) {
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true,
    'aria-describedby': 'token-help', spellcheck: 'false' });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { id: 'signin', class: 'card narrow' },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { id: 'token-help', class: 'help' },
      'The token is kept in this browser tab only (sessionStorage) and sent as ',
      h('code', {}, 'Authorization: Bearer …'), ' with every request.'),
    h('button', { type: 'submit' }, 'Sign in'),
    err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (token) err.textContent = await signIn(token);
  });
  err.textContent = signInError;
  view.append(form);
  input.focus();
  return { cleanup() {} };
}

// ---- overview

// Estimated starts of the queued jobs: each worker frees up at its running job's estimated_finish (now if
// idle); each queued job takes the average duration of the finished jobs listed. Unknown if nothing finished.
function estimateStarts(jobs, workers) {
  const out = new Map();
  if (!workers) return out;
  const done = jobs.filter((j) => j.status === 'succeeded' && j.started_at && j.finished_at);
  const avg = done.length ? done.reduce((s, j) => s + (j.finished_at - j.started_at), 0) / done.length : null;
  const t = now();
  const slots = jobs.filter((j) => j.status === 'running').map((j) => (j.estimated_finish ? Math.max(t, j.estimated_finish) : null));
  while (slots.length < workers) slots.push(t);
  const queued = jobs.filter((j) => j.status === 'queued').sort((a, b) => a.queue_position - b.queue_position);
  for (const j of queued) {
    let k = -1;
    for (let i = 0; i < slots.length; i++) if (slots[i] !== null && (k < 0 || slots[i] < slots[k])) k = i;
    if (k < 0) break;
    out.set(j.id, slots[k]);
    slots[k] = avg === null ? null : slots[k] + avg;
  }
  return out;
}

function progressBar(job) {
  const p = job.progress || {};
  const total = p.total_steps || 0;
  const frac = total ? Math.min(1, (p.step || 0) / total) : 0;
  const text = total ? `step ${p.step} of ${total} (${Math.round(frac * 100)} %), epoch ${p.epoch} of ${p.epochs}` : 'starting…';
  return h('div', { class: 'progress' },
    h('progress', { max: 1, value: frac, 'aria-label': `Progress: ${text}` }),
    h('span', { class: 'progress-text' }, text));
}

function jobLink(job) {
  return h('a', { href: `#/jobs/${encodeURIComponent(job.id)}`, class: 'mono' }, job.id);
}

function table(caption, head, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'scroll' },
    h('table', {},
      h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows)));
}

function overviewView(view) {
  const ac = new AbortController();
  const selected = new Set();
  const body = h('div', { id: 'overview' });
  const compareBtn = h('button', { type: 'button', disabled: true, onclick: () => {
    location.hash = `#/compare?ids=${[...selected].map(encodeURIComponent).join(',')}`;
  } }, 'Compare selected');
  view.append(h('div', { class: 'titlebar' }, h('h1', {}, 'Fine-tuning jobs'), compareBtn), body);

  const pick = (job) => h('input', { type: 'checkbox', checked: selected.has(job.id), 'aria-label': `Select ${job.id} to compare`,
    onchange: (e) => {
      if (e.target.checked) selected.add(job.id); else selected.delete(job.id);
      compareBtn.disabled = selected.size < 2;
      compareBtn.textContent = `Compare selected (${selected.size})`;
    } });

  let timer = null;
  async function refresh() {
    try {
      const [jobs, ready] = await Promise.all([listJobs(ac.signal), api('GET', '/readyz', { signal: ac.signal }).catch(() => null)]);
      const workers = ready ? ready.workers : null;
      const starts = estimateStarts(jobs, workers);
      const queued = jobs.filter((j) => j.status === 'queued' || j.status === 'validating_files')
        .sort((a, b) => (a.queue_position || 0) - (b.queue_position || 0));
      const active = jobs.filter((j) => j.status === 'running' || j.status === 'paused');
      const finished = jobs.filter((j) => FINAL.has(j.status));
      const t = now();
      body.replaceChildren(
        h('section', { 'aria-labelledby': 'h-running' },
          h('h2', { id: 'h-running' }, `Running (${active.length})`),
          table('Running and paused jobs', ['', 'Job', 'Status', 'Model / method', 'Progress', 'ETA', 'Images/s', 'Train loss'],
            active.map((j) => h('tr', { dataset: { job: j.id } },
              h('td', {}, pick(j)), h('td', {}, jobLink(j)), h('td', {}, statusBadge(j.status)),
              h('td', {}, j.model, h('br'), h('small', {}, methodOf(j))),
              h('td', { class: 'wide' }, progressBar(j)),
              h('td', {}, j.estimated_finish ? `${fmtDuration(j.estimated_finish - t)} (${fmtTime(j.estimated_finish)})` : '—'),
              h('td', { class: 'num' }, fmtNum(j.metrics && j.metrics.images_per_second, 3)),
              h('td', { class: 'num' }, fmtNum(j.metrics && j.metrics.train_loss)))),
            'No job is running.')),
        h('section', { 'aria-labelledby': 'h-queue' },
          h('h2', { id: 'h-queue' }, `Queue (${queued.length})`),
          workers === 0 ? h('p', { class: 'help' }, 'The daemon runs with 0 workers: queued jobs will not start.') : null,
          table('Queued jobs', ['', 'Position', 'Job', 'Model / method', 'Created', 'Estimated start'],
            queued.map((j) => {
              const s = starts.get(j.id);
              const est = s === undefined ? 'unknown' : s <= t + 1 ? 'now' : `in ${fmtDuration(s - t)} (${fmtTime(s)})`;
              return h('tr', { dataset: { job: j.id } },
                h('td', {}, pick(j)), h('td', { class: 'num' }, `#${j.queue_position ?? '—'}`), h('td', {}, jobLink(j)),
                h('td', {}, j.model, h('br'), h('small', {}, methodOf(j))),
                h('td', {}, fmtTime(j.created_at)), h('td', {}, `≈ ${est}`));
            }),
            'The queue is empty.')),
        h('section', { 'aria-labelledby': 'h-finished' },
          h('h2', { id: 'h-finished' }, `Finished (${finished.length})`),
          table('Finished jobs', ['', 'Job', 'Status', 'Model / method', 'Best accuracy', 'Final accuracy', 'Duration', 'Finished'],
            finished.map((j) => h('tr', { dataset: { job: j.id } },
              h('td', {}, pick(j)), h('td', {}, jobLink(j)), h('td', {}, statusBadge(j.status)),
              h('td', {}, j.model, h('br'), h('small', {}, methodOf(j))),
              h('td', { class: 'num' }, fmtPct(j.best_valid_accuracy)),
              h('td', { class: 'num' }, fmtPct(j.final_valid_accuracy)),
              h('td', {}, j.started_at && j.finished_at ? fmtDuration(j.finished_at - j.started_at) : '—'),
              h('td', {}, fmtTime(j.finished_at)))),
            'No finished job yet.')));
    } catch (e) {
      if (e.name !== 'AbortError') notice(`Cannot list jobs: ${e.message}`, 'error');
    }
    if (!ac.signal.aborted) timer = setTimeout(refresh, POLL_MS);
  }
  refresh();
  return { cleanup() { ac.abort(); clearTimeout(timer); } };
}

// ---- job page

function kvTable(caption, obj) {
  const rows = [];
  const walk = (prefix, v) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
    } else {
      rows.push(h('tr', {}, h('th', { scope: 'row' }, prefix), h('td', { class: 'mono' }, v === null || v === undefined ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v))));
    }
  };
  walk('', obj);
  return h('div', { class: 'scroll' }, h('table', { class: 'kv' }, h('caption', { class: 'sr-only' }, caption), h('tbody', {}, rows)));
}

function jobView(view, id, params) {
  const ac = new AbortController();
  const timers = new Set();
  const later = (fn, ms) => { const t = setTimeout(() => { timers.delete(t); fn(); }, ms); timers.add(t); return t; };
  const forcePoll = params.get('live') === 'poll';

  // state
  let job = null;
  let lastEventId = null;
  const lastStep = {}; // metric name -> last step charted
  const charts = {};   // metric name -> { chart, fig, value }
  let chartDirty = false;
  let ended = false;

  // skeleton
  const head = h('div', { class: 'titlebar' }, h('h1', { class: 'mono' }, id));
  const summary = h('div', { id: 'summary', class: 'card' }, 'Loading…');
  const live = h('p', { id: 'live', class: 'help', role: 'status', dataset: { mode: 'starting' } }, 'Connecting…');
  const controls = h('div', { class: 'controls', role: 'group', 'aria-label': 'Job actions' });
  const chartGrid = h('div', { class: 'charts' });
  const logList = h('ol', { id: 'log', class: 'log', 'aria-live': 'off' });
  const latestStep = h('li', { class: 'latest', hidden: true });
  logList.append(latestStep);
  const hyper = h('div', { id: 'hyper' });
  const ckpts = h('div', { id: 'checkpoints' });
  const model = h('div', { id: 'model' });
  view.append(head, summary, controls, live,
    h('section', { 'aria-labelledby': 'h-curves' }, h('h2', { id: 'h-curves' }, 'Curves'), chartGrid),
    h('div', { class: 'two' },
      h('section', { 'aria-labelledby': 'h-log' }, h('h2', { id: 'h-log' }, 'Events'), h('div', { class: 'logbox' }, logList)),
      h('section', { 'aria-labelledby': 'h-hyper' }, h('h2', { id: 'h-hyper' }, 'Effective hyper-parameters'), hyper)),
    h('div', { class: 'two' },
      h('section', { 'aria-labelledby': 'h-ckpt' }, h('h2', { id: 'h-ckpt' }, 'Checkpoints'), ckpts),
      h('section', { 'aria-labelledby': 'h-model' }, h('h2', { id: 'h-model' }, 'Model'), model)));

  for (const m of METRICS) {
    const canvas = h('canvas', { role: 'img', 'aria-label': `${m.label} by training step` });
    const value = h('span', { class: 'latest-value' }, '—');
    const fig = h('figure', { class: 'chart', dataset: { metric: m.name, points: '0' } },
      h('figcaption', {}, h('span', {}, m.label), value),
      h('div', { class: 'canvas-box' }, canvas));
    chartGrid.append(fig);
    let chart = null;
    try {
      chart = lineChart(canvas, { datasets: [{ label: m.label, data: [], ...seriesStyle(0, m.from === 'validation') }],
        percent: m.name === 'valid_accuracy' });
    } catch (e) { notice(e.message, 'error'); }
    charts[m.name] = { chart, fig, value, percent: m.name === 'valid_accuracy' };
  }

  function addPoint(name, step, y) {
    const c = charts[name];
    if (!c || y === null || y === undefined || !(step > (lastStep[name] || 0))) return;
    lastStep[name] = step;
    if (c.chart) {
      const data = c.chart.data.datasets[0].data;
      data.push({ x: step, y });
      capPoints(data);
    }
    c.fig.dataset.points = String(Number(c.fig.dataset.points) + 1);
    c.value.textContent = c.percent ? fmtPct(y) : fmtNum(y);
    if (!chartDirty) { chartDirty = true; requestAnimationFrame(() => { chartDirty = false; for (const x of Object.values(charts)) if (x.chart) x.chart.update('none'); }); }
  }

  function addSeries(series) {
    for (const [name, s] of Object.entries(series || {})) {
      for (let i = 0; i < s.steps.length; i++) addPoint(name, s.steps[i], s.values[i]);
    }
  }

  // ---- rendering of the job

  // "slurm job 1234 · RUNNING on node1", "slurm job 1234 · PENDING (Priority)", "local"
  function executorText(x) {
    if (!x) return '—';
    let t = x.type || '—';
    if (x.job_id) t += ` job ${x.job_id}`;
    if (x.state) t += ` · ${x.state}`;
    if (x.node) t += ` on ${x.node}`;
    if (x.reason) t += ` (${x.reason})`;
    return t;
  }

  function renderSummary() {
    const j = job;
    const p = j.progress || {};
    const m = j.metrics || {};
    const t = now();
    const items = [
      ['Status', h('span', { id: 'job-status', dataset: { status: j.status } }, statusBadge(j.status))],
      ['Model', j.model], ['Method', methodOf(j)], ['Training data', j.training_file],
      ['Progress', progressBar(j)],
      ['ETA', j.estimated_finish ? `${fmtDuration(j.estimated_finish - t)} (${fmtTime(j.estimated_finish)})` : '—'],
      ['Images/s', fmtNum(m.images_per_second, 3)],
      ['Best / final accuracy', `${fmtPct(j.best_valid_accuracy)} / ${fmtPct(j.final_valid_accuracy)}`],
      ['Queue position', j.queue_position ? `#${j.queue_position}` : '—'],
      ['Executor', h('span', { id: 'job-executor' }, executorText(j.executor))],
      // as asked, and the GPU the scheduler gave a "cuda" job while it runs
      ['Device', h('span', { id: 'job-device', class: 'mono' },
        j.assigned_device && j.assigned_device !== j.device ? `${j.device} → ${j.assigned_device}` : (j.device || 'cpu'))],
      ['Created / started / finished', `${fmtTime(j.created_at)} / ${fmtTime(j.started_at)} / ${fmtTime(j.finished_at)}`],
    ];
    const sweepId = j.metadata && j.metadata.sweep_id;
    if (sweepId) items.push(['Sweep', h('a', { href: `#/sweeps/${encodeURIComponent(sweepId)}`, class: 'mono', id: 'job-sweep' }, sweepId)]);
    if (j.error) items.push(['Error', h('span', { class: 'error' }, `${j.error.code || ''}: ${j.error.message || ''}`)]);
    summary.replaceChildren(h('dl', { class: 'facts' }, items.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
    head.replaceChildren(h('h1', { class: 'mono' }, j.id), statusBadge(j.status),
      h('a', { href: `#/compare?ids=${encodeURIComponent(j.id)}`, class: 'button secondary' }, 'Compare…'));

    const act = (label, action, enabled, idAttr) => h('button', { type: 'button', id: idAttr, disabled: !enabled, onclick: async (e) => {
      if (action === 'cancel' && !window.confirm(`Cancel job ${j.id}? This cannot be undone.`)) return;
      e.target.disabled = true;
      try {
        job = await api('POST', `${JOBS}/${encodeURIComponent(j.id)}/${action}`);
        notice(`Job ${job.id} is now ${job.status}.`);
        renderJob();
        if (ended && !FINAL.has(job.status)) startLive(); // resumed after the stream ended
      } catch (err) {
        notice(`Cannot ${action} ${j.id}: ${err.message}`, 'error');
        refreshJob();
      }
    } }, label);
    const st = j.status;
    controls.replaceChildren(
      act('Pause', 'pause', st === 'queued' || st === 'running', 'pause'),
      act('Resume', 'resume', st === 'paused', 'resume'),
      act('Cancel job', 'cancel', st === 'queued' || st === 'running' || st === 'paused', 'cancel'));
  }

  function renderJob() {
    renderSummary();
    hyper.replaceChildren(kvTable('Hyper-parameters', {
      method: methodOf(job), ...(job.hyperparameters || {}), seed: job.seed, model: job.model,
      training_file: job.training_file, validation_file: job.validation_file, suffix: job.suffix,
      architecture: job.architecture, data: job.data,
    }));
    const fm = job.fine_tuned_model;
    if (fm) {
      const base = `/v1/models/${encodeURIComponent(fm)}/content`;
      const file = fm.replace(/[:"/\\]/g, '_');
      const dl = (which) => h('button', { type: 'button', class: 'secondary', onclick: () =>
        download(`${base}?which=${which}`, `${file}${which === 'best' ? '.best' : ''}.safetensors`).catch((e) => notice(`Download failed: ${e.message}`, 'error')) },
      `Download ${which} weights`);
      model.replaceChildren(h('p', { class: 'mono', id: 'model-id' }, fm), h('div', { class: 'controls' }, dl('final'), dl('best')),
        h('p', { class: 'help' }, 'safetensors; "best" is the epoch with the highest validation accuracy.'));
    } else {
      model.replaceChildren(h('p', { class: 'empty' }, FINAL.has(job.status) ? 'This job produced no model.' : 'The model is available when the job succeeds.'));
    }
  }

  async function refreshJob() {
    try {
      job = await api('GET', `${JOBS}/${encodeURIComponent(id)}`, { signal: ac.signal });
      renderJob();
    } catch (e) {
      if (e.name !== 'AbortError') notice(`Cannot load job ${id}: ${e.message}`, 'error');
    }
  }

  async function refreshCheckpoints() {
    try {
      const r = await api('GET', `${JOBS}/${encodeURIComponent(id)}/checkpoints?limit=100`, { signal: ac.signal });
      ckpts.replaceChildren(table('Checkpoints', ['Step', 'Epoch', 'Metrics', 'Created'],
        r.data.map((c) => h('tr', {}, h('td', { class: 'num' }, c.step_number), h('td', { class: 'num' }, c.epoch ?? '—'),
          h('td', { class: 'mono small' }, Object.entries(c.metrics || {}).map(([k, v]) => `${k}=${typeof v === 'number' ? fmtNum(v) : v}`).join(' ')),
          h('td', {}, fmtTime(c.created_at)))),
        'No checkpoint yet.'));
    } catch (e) {
      if (e.name !== 'AbortError') notice(`Cannot list checkpoints: ${e.message}`, 'error');
    }
  }

  // coalesce refreshes triggered by bursts of events
  const pending = new Map();
  const soon = (key, fn) => { if (!pending.has(key)) pending.set(key, later(() => { pending.delete(key); fn(); }, 300)); };

  function logEvent(ev) {
    if (ev.type === 'metrics') {
      const d = ev.data || {};
      latestStep.hidden = false;
      latestStep.textContent = `${fmtTime(ev.created_at)} · step ${d.step}/${d.total_steps} · epoch ${d.epoch} · loss ${fmtNum(d.train_loss)} · ${fmtNum(d.images_per_second, 3)} img/s`;
      return;
    }
    const li = h('li', { class: `lv-${ev.level}`, dataset: { type: ev.type } },
      h('time', {}, fmtTime(ev.created_at)), ' ',
      ev.level !== 'info' ? h('strong', {}, `${ev.level.toUpperCase()}: `) : null,
      ev.message || ev.type);
    logList.insertBefore(li, latestStep);
    while (logList.children.length > 500) logList.firstChild.remove();
  }

  function onEvent(ev) {
    if (ev.id) lastEventId = ev.id;
    const d = ev.data || {};
    if (ev.type === 'metrics') {
      for (const m of METRICS) if (m.from === 'metrics') addPoint(m.name, d.step, d[m.name]);
      if (job && job.status === 'running') {
        job.progress = { ...job.progress, step: d.step, total_steps: d.total_steps, epoch: d.epoch };
        job.metrics = { ...job.metrics, images_per_second: d.images_per_second };
        soon('summary', renderSummary);
      }
    } else if (ev.type === 'validation') {
      for (const m of METRICS) if (m.from === 'validation') addPoint(m.name, d.step, d[m.name]);
      soon('job', refreshJob);
    } else if (ev.type === 'checkpoint') {
      soon('ckpt', refreshCheckpoints);
    } else if (ev.type === 'status' || ev.type === 'error') {
      soon('job', refreshJob);
    }
    logEvent(ev);
  }

  function setLive(mode, text) {
    live.dataset.mode = mode;
    live.textContent = text;
  }

  // ---- live updates: SSE through fetch(), polling as the fallback

  let streamFailures = 0;
  async function stream() {
    setLive('sse', 'Live: streaming events (server-sent events).');
    let got = false;
    try {
      const endedCleanly = await readEventStream(`${JOBS}/${encodeURIComponent(id)}/events?stream=true`, lastEventId, ac.signal, (type, data, eid) => {
        got = true;
        onEvent({ ...data, type: data.type || type, id: data.id || eid });
      });
      if (endedCleanly) { finish(); return; }
    } catch (e) {
      if (ac.signal.aborted) return;
      if (e.status === 404) { notice(`Job ${id} does not exist.`, 'error'); setLive('off', 'Not live.'); return; }
    }
    if (ac.signal.aborted) return;
    streamFailures = got ? 0 : streamFailures + 1;
    if (streamFailures >= 3) { poll(); return; } // streaming keeps failing: poll instead
    setLive('sse', 'Live: reconnecting…');
    later(stream, 1000 * streamFailures);
  }

  async function pollEvents() {
    for (let page = 0; page < 20; page++) {
      const q = `${JOBS}/${encodeURIComponent(id)}/events?limit=100${lastEventId ? `&after=${encodeURIComponent(lastEventId)}` : ''}`;
      const r = await api('GET', q, { signal: ac.signal });
      for (const ev of r.data) {
        // the curves come from the metrics endpoint in this mode; events feed the log and the refreshes
        if (ev.type === 'metrics' || ev.type === 'validation') { lastEventId = ev.id; logEvent(ev); } else onEvent(ev);
      }
      if (!r.has_more) return;
    }
  }

  async function pollMetrics() {
    const groups = [METRICS.filter((m) => m.from === 'metrics'), METRICS.filter((m) => m.from === 'validation')];
    for (const g of groups) {
      const after = Math.min(...g.map((m) => lastStep[m.name] || 0));
      const names = g.map((m) => m.name).join(',');
      const r = await api('GET', `${JOBS}/${encodeURIComponent(id)}/metrics?names=${names}&max_points=1000&after_step=${after}`, { signal: ac.signal });
      addSeries(r.series);
    }
  }

  async function poll() {
    setLive('poll', `Live: polling every ${POLL_MS / 1000} s.`);
    try {
      await pollMetrics();
      await pollEvents();
      job = await api('GET', `${JOBS}/${encodeURIComponent(id)}`, { signal: ac.signal });
      renderSummary();
      if (FINAL.has(job.status)) { renderJob(); finish(); return; }
    } catch (e) {
      if (ac.signal.aborted) return;
      notice(`Polling failed (retrying): ${e.message}`, 'error');
    }
    if (!ac.signal.aborted) later(poll, POLL_MS);
  }

  function finish() {
    ended = true;
    refreshJob().then(() => setLive('ended', job && FINAL.has(job.status) ? `The job ${job.status}; nothing more will come.` : 'The event stream ended.'));
    refreshCheckpoints();
  }

  function startLive() {
    ended = false;
    streamFailures = 0;
    const canStream = !forcePoll && typeof ReadableStream !== 'undefined' && 'body' in Response.prototype;
    if (canStream) stream(); else poll();
  }

  (async () => {
    await refreshJob();
    if (!job) { setLive('off', 'Not live.'); return; }
    try {
      const r = await api('GET', `${JOBS}/${encodeURIComponent(id)}/metrics?names=${METRICS.map((m) => m.name).join(',')}&max_points=500`, { signal: ac.signal });
      addSeries(r.series);
    } catch (e) {
      if (e.name !== 'AbortError') notice(`Cannot load metrics: ${e.message}`, 'error');
    }
    refreshCheckpoints();
    startLive();
  })();

  return {
    cleanup() {
      ac.abort();
      for (const t of timers) clearTimeout(t);
      for (const c of Object.values(charts)) if (c.chart) c.chart.destroy();
    },
  };
}

// ---- compare

function compareView(view, params) {
  const ac = new AbortController();
  let timer = null;
  let chart = null;
  const ids = new Set((params.get('ids') || '').split(',').filter(Boolean));
  let metric = METRICS.some((m) => m.name === params.get('metric')) ? params.get('metric') : 'valid_accuracy';

  const select = h('select', { id: 'metric', onchange: (e) => { metric = e.target.value; syncHash(); draw(); } },
    METRICS.map((m) => h('option', { value: m.name, selected: m.name === metric }, m.label)));
  const picker = h('fieldset', { class: 'picker' }, h('legend', {}, 'Jobs'), h('p', {}, 'Loading…'));
  const canvas = h('canvas', { role: 'img', 'aria-label': 'Overlaid curves of the selected jobs' });
  const fig = h('figure', { class: 'chart big', dataset: { metric, series: '0' } }, h('div', { class: 'canvas-box' }, canvas));
  const summary = h('div', { id: 'compare-summary' });
  view.append(h('div', { class: 'titlebar' }, h('h1', {}, 'Compare jobs')),
    h('div', { class: 'compare' },
      h('div', {}, h('label', { for: 'metric' }, 'Curve '), select, picker),
      h('div', {}, fig, summary)));

  function syncHash() {
    const q = `#/compare?ids=${[...ids].map(encodeURIComponent).join(',')}&metric=${metric}`;
    history.replaceState(null, '', q);
  }

  let jobs = [];
  async function draw() {
    clearTimeout(timer);
    const chosen = jobs.filter((j) => ids.has(j.id));
    const m = METRICS.find((x) => x.name === metric);
    try {
      const series = await Promise.all(chosen.map((j) =>
        api('GET', `${JOBS}/${encodeURIComponent(j.id)}/metrics?names=${metric}&max_points=500`, { signal: ac.signal })
          .then((r) => r.series[metric] || { steps: [], values: [] })));
      const datasets = chosen.map((j, i) => ({
        label: `${j.id} · ${methodOf(j)}${j.suffix ? ` · ${j.suffix}` : ''}`,
        data: series[i].steps.map((x, k) => ({ x, y: series[i].values[k] })),
        ...seriesStyle(i, m.from === 'validation' || series[i].steps.length < 30),
      }));
      if (chart) chart.destroy();
      chart = lineChart(canvas, { datasets, yLabel: m.label, percent: metric === 'valid_accuracy' });
      chart.options.plugins.legend.display = true;
      chart.update('none');
      fig.dataset.metric = metric;
      fig.dataset.series = String(datasets.length);
      summary.replaceChildren(table('Selected jobs', ['Line', 'Job', 'Method', 'Status', 'Best accuracy', 'Final accuracy', `Last ${m.label.toLowerCase()}`],
        chosen.map((j, i) => {
          const s = series[i];
          const last = s.values.length ? s.values[s.values.length - 1] : null;
          return h('tr', {}, h('td', {}, lineKey(i)), h('td', {}, jobLink(j)), h('td', {}, methodOf(j)), h('td', {}, statusBadge(j.status)),
            h('td', { class: 'num' }, fmtPct(j.best_valid_accuracy)), h('td', { class: 'num' }, fmtPct(j.final_valid_accuracy)),
            h('td', { class: 'num' }, metric === 'valid_accuracy' ? fmtPct(last) : fmtNum(last)));
        }), 'Select two or more jobs to overlay their curves.'));
    } catch (e) {
      if (e.name !== 'AbortError') notice(`Cannot load curves: ${e.message}`, 'error');
    }
    if (chosen.some((j) => !FINAL.has(j.status)) && !ac.signal.aborted) timer = setTimeout(reload, 5000);
  }

  async function reload() {
    try {
      jobs = await listJobs(ac.signal);
      picker.replaceChildren(h('legend', {}, 'Jobs'), ...jobs.map((j) => h('label', { class: 'pick' },
        h('input', { type: 'checkbox', value: j.id, checked: ids.has(j.id), onchange: (e) => {
          if (e.target.checked) ids.add(j.id); else ids.delete(j.id);
          syncHash(); draw();
        } }),
        ' ', h('span', { class: 'mono' }, j.id), ' ', h('small', {}, `${j.model} · ${methodOf(j)} · `), statusBadge(j.status))));
      if (!jobs.length) picker.append(h('p', { class: 'empty' }, 'No jobs yet.'));
      await draw();
    } catch (e) {
      if (e.name !== 'AbortError') notice(`Cannot list jobs: ${e.message}`, 'error');
    }
  }
  reload();
  return { cleanup() { ac.abort(); clearTimeout(timer); if (chart) chart.destroy(); } };
}

// ---- sweeps

// The shortest dotted suffix of each parameter path that no other path shares: "eta" for
// method.core_tuning.hyperparameters.eta, unless another parameter also ends in ".eta". Map path -> name.
function shortNames(paths) {
  const out = new Map();
  const suffix = (p, k) => p.split('.').slice(-k).join('.');
  for (const p of paths) {
    const n = p.split('.').length;
    let k = 1;
    while (k < n && paths.some((q) => q !== p && suffix(q, k) === suffix(p, k))) k++;
    out.set(p, suffix(p, k));
  }
  return out;
}

function sweepNames(sweep) {
  const paths = new Set(Object.keys(sweep.parameters || {}));
  for (const t of sweep.trials || []) for (const p of Object.keys(t.parameters || {})) paths.add(p);
  return shortNames([...paths]);
}

function fmtParam(v) {
  return typeof v === 'number' ? fmtNum(v, 6) : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
}

// "eta=1 learning_rate=0.03", as the CLI writes it
function paramsText(params, names) {
  return Object.entries(params || {}).map(([k, v]) => `${names.get(k) || k}=${fmtParam(v)}`).join(' ');
}

// One parameter's search space: "0.1, 1, 3" or "log-uniform 0.001 … 0.1"
function spaceText(v) {
  if (Array.isArray(v)) return v.map(fmtParam).join(', ');
  if (v && Array.isArray(v.log_uniform)) return `log-uniform ${fmtParam(v.log_uniform[0])} … ${fmtParam(v.log_uniform[1])}`;
  return fmtParam(v);
}

function searchText(s) {
  if (typeof s === 'string') return s;
  if (s && s.random !== undefined) return `random, ${s.random} trials${s.seed !== undefined ? `, seed ${s.seed}` : ''}`;
  return s ? JSON.stringify(s) : '—';
}

const objectiveOf = (sweep) => sweep.objective || { metric: 'valid_accuracy', goal: 'maximize' };
const fmtObjective = (sweep, v) => (/accuracy/.test(objectiveOf(sweep).metric) ? fmtPct(v) : fmtNum(v));

// Is trial t the sweep's best? Its job, or, when the best is a mean over seeds, any seed's trial of it.
function isBestTrial(sweep, t) {
  const b = sweep.best;
  if (!b) return false;
  if (b.job_id && t.job_id === b.job_id) return true;
  if (!(Array.isArray(b.seeds) && b.seeds.length > 1) || !b.parameters) return false;
  const keys = Object.keys(b.parameters);
  return keys.length === Object.keys(t.parameters || {}).length && keys.every((k) => t.parameters[k] === b.parameters[k]);
}

// The trials in leaderboard order with their ranks: succeeded trials with an objective, best first (per
// the goal; ties by index), then every other trial in index order, unranked. Same as `coretune sweep show`.
function rankTrials(sweep) {
  const max = objectiveOf(sweep).goal !== 'minimize';
  const rows = (sweep.trials || []).map((t, i) => ({
    t, index: t.index ?? i, best: isBestTrial(sweep, t),
    ranked: t.status === 'succeeded' && typeof t.objective === 'number' && Number.isFinite(t.objective),
  }));
  rows.sort((a, b) => {
    if (a.ranked !== b.ranked) return a.ranked ? -1 : 1;
    if (a.ranked && a.t.objective !== b.t.objective) return max ? b.t.objective - a.t.objective : a.t.objective - b.t.objective;
    return a.index - b.index;
  });
  let rank = 0;
  for (const r of rows) r.rank = r.ranked ? ++rank : null;
  return rows;
}

function trialCounts(sweep) {
  const order = ['succeeded', 'running', 'paused', 'queued', 'pending', 'failed', 'cancelled'];
  const trials = sweep.trials || [];
  const parts = order.map((st) => [st, trials.filter((t) => t.status === st).length]).filter(([, n]) => n);
  return `${trials.length}${parts.length ? ` (${parts.map(([st, n]) => `${n} ${st}`).join(', ')})` : ''}`;
}

function sweepLink(sweep) {
  return h('a', { href: `#/sweeps/${encodeURIComponent(sweep.id)}`, class: 'mono' }, sweep.id);
}

// Trial statuses include "pending" (no job yet), which jobs never have.
function trialBadge(status) {
  return status === 'pending'
    ? h('span', { class: 'badge st-pending', dataset: { status } }, h('span', { 'aria-hidden': 'true' }, '…'), ' ', 'pending')
    : statusBadge(status);
}

async function listSweeps(signal) {
  const sweeps = [];
  let after = null;
  for (let page = 0; page < 10; page++) {
    const r = await api('GET', `${SWEEPS}?limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`, { signal });
    sweeps.push(...r.data);
    if (!r.has_more || !r.data.length) break;
    after = r.data[r.data.length - 1].id;
  }
  return sweeps;
}

function sweepsView(view) {
  const ac = new AbortController();
  const body = h('div', { id: 'sweeps' }, h('p', {}, 'Loading…'));
  view.append(h('div', { class: 'titlebar' }, h('h1', {}, 'Hyper-parameter sweeps')), body);
  let timer = null;
  async function refresh() {
    try {
      const sweeps = await listSweeps(ac.signal);
      body.replaceChildren(table('Sweeps', ['Sweep', 'Status', 'Model / method', 'Objective', 'Trials', 'Best', 'Created'],
        sweeps.map((s) => {
          const trials = s.trials || [];
          const done = trials.filter((t) => FINAL.has(t.status)).length;
          const o = objectiveOf(s);
          return h('tr', { dataset: { sweep: s.id } },
            h('td', {}, sweepLink(s)), h('td', {}, statusBadge(s.status)),
            h('td', {}, (s.job && s.job.model) || '—', h('br'), h('small', {}, s.job ? methodOf(s.job) : '—')),
            h('td', {}, `${o.goal === 'minimize' ? 'min' : 'max'} ${o.metric}`),
            h('td', { class: 'wide' }, h('div', { class: 'progress' },
              h('progress', { max: trials.length || 1, value: done, 'aria-label': `${done} of ${trials.length} trials finished` }),
              h('span', { class: 'progress-text' }, `${done} of ${trials.length} finished`))),
            h('td', { class: 'num' }, s.best ? fmtObjective(s, s.best.objective) : '—'),
            h('td', {}, fmtTime(s.created_at)));
        }),
        'No sweep yet. Start one with coretune sweep submit SPEC.json (docs/cli.md).'));
    } catch (e) {
      if (e.name !== 'AbortError') notice(`Cannot list sweeps: ${e.message}`, 'error');
    }
    if (!ac.signal.aborted) timer = setTimeout(refresh, POLL_MS);
  }
  refresh();
  return { cleanup() { ac.abort(); clearTimeout(timer); } };
}

function sweepView(view, id, params) {
  const ac = new AbortController();
  const timers = new Set();
  const later = (fn, ms) => { const t = setTimeout(() => { timers.delete(t); fn(); }, ms); timers.add(t); return t; };
  const forcePoll = params.get('live') === 'poll';

  let sweep = null;
  let lastEventId = null;
  let ended = false;
  let metric = 'valid_accuracy';
  const curves = new Map(); // job id -> { steps, values, final: loaded after the trial ended }

  const head = h('div', { class: 'titlebar' }, h('h1', { class: 'mono' }, id));
  const summary = h('div', { id: 'sweep-summary', class: 'card' }, 'Loading…');
  const controls = h('div', { class: 'controls', role: 'group', 'aria-label': 'Sweep actions' });
  const live = h('p', { id: 'live', class: 'help', role: 'status', dataset: { mode: 'starting' } }, 'Connecting…');
  const board = h('div', { id: 'leaderboard' }, h('p', {}, 'Loading…'));
  const canvas = h('canvas', { role: 'img', 'aria-label': 'Validation curves of the trials, overlaid' });
  const caption = h('figcaption', {}, h('span', {}, 'Validation accuracy by trial'), h('span', { class: 'latest-value' }, ''));
  const fig = h('figure', { class: 'chart big', id: 'sweep-chart', dataset: { metric, series: '0', points: '0' } },
    caption, h('div', { class: 'canvas-box' }, canvas));
  const logList = h('ol', { id: 'log', class: 'log', 'aria-live': 'off' });
  view.append(head, summary, controls, live,
    h('section', { 'aria-labelledby': 'h-board' }, h('h2', { id: 'h-board' }, 'Leaderboard'), board),
    h('section', { 'aria-labelledby': 'h-curves' }, h('h2', { id: 'h-curves' }, 'Curves'), fig),
    h('section', { 'aria-labelledby': 'h-log' }, h('h2', { id: 'h-log' }, 'Events'), h('div', { class: 'logbox' }, logList)));

  let chart = null;
  try {
    chart = lineChart(canvas, { datasets: [], yLabel: 'Validation accuracy', percent: true });
  } catch (e) { notice(e.message, 'error'); }

  function renderSummary() {
    const s = sweep;
    const names = sweepNames(s);
    const o = objectiveOf(s);
    const b = s.best;
    const items = [
      ['Status', h('span', { id: 'sweep-status', dataset: { status: s.status } }, statusBadge(s.status))],
      ['Model', (s.job && s.job.model) || '—'], ['Method', s.job ? methodOf(s.job) : '—'],
      ['Training data', (s.job && s.job.training_file) || '—'],
      ['Search', searchText(s.search)],
      ['Objective', `${o.goal === 'minimize' ? 'minimize' : 'maximize'} ${o.metric}`],
      ['Parameters', h('span', { class: 'mono small' }, Object.entries(s.parameters || {}).map(([k, v]) => `${names.get(k) || k}: ${spaceText(v)}`).join(' · ') || '—')],
      ['Trials', trialCounts(s)],
      ['Max parallel', s.max_parallel ?? '—'],
      ['Seeds', Array.isArray(s.seeds) && s.seeds.length ? s.seeds.join(', ') : '—'],
      ['Test data', s.test_file || '—'],
      ['Best', b ? h('span', { id: 'sweep-best' }, b.job_id ? jobLink({ id: b.job_id }) : '—', ' ',
        h('span', { class: 'mono small' }, paramsText(b.parameters, names)), ` · ${o.metric} ${fmtObjective(s, b.objective)}`,
        Array.isArray(b.seeds) && b.seeds.length > 1 ? ` (mean over seeds ${b.seeds.join(', ')})` : '') : '—'],
      ['Test accuracy', fmtPct(b ? b.test_accuracy : null)],
      ['Fine-tuned model', s.fine_tuned_model ? h('span', { class: 'mono' }, s.fine_tuned_model) : '—'],
      ['Created / finished', `${fmtTime(s.created_at)} / ${fmtTime(s.finished_at)}`],
    ];
    summary.replaceChildren(h('dl', { class: 'facts' }, items.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
    head.replaceChildren(h('h1', { class: 'mono' }, s.id), statusBadge(s.status));
    const running = !FINAL.has(s.status);
    controls.replaceChildren(h('button', { type: 'button', id: 'cancel', disabled: !running, onclick: async (e) => {
      if (!window.confirm(`Cancel sweep ${s.id} and all its trials? This cannot be undone.`)) return;
      e.target.disabled = true;
      try {
        sweep = await api('POST', `${SWEEPS}/${encodeURIComponent(s.id)}/cancel`);
        notice(`Sweep ${sweep.id} is now ${sweep.status}.`);
        render();
      } catch (err) {
        notice(`Cannot cancel ${s.id}: ${err.message}`, 'error');
        refresh();
      }
    } }, 'Cancel sweep'));
  }

  function renderBoard() {
    const names = sweepNames(sweep);
    const o = objectiveOf(sweep);
    board.replaceChildren(table('Leaderboard: trials ranked by the objective',
      ['Rank', 'Trial', 'Line', 'Job', 'Parameters', 'Seed', 'Status', `Objective (${o.metric})`, 'Best epoch'],
      rankTrials(sweep).map((r) => h('tr', { class: r.best ? 'best' : null, dataset: { trial: r.index, job: r.t.job_id || '', rank: r.rank ?? '' } },
        h('td', { class: 'num' }, r.rank ?? '—', r.best ? h('span', { class: 'best-mark', title: 'best' }, ' *') : null,
          r.best ? h('span', { class: 'sr-only' }, ' (best)') : null),
        h('td', { class: 'num' }, r.index),
        h('td', {}, r.t.job_id ? lineKey(r.index, r.index) : '—'),
        h('td', {}, r.t.job_id ? jobLink({ id: r.t.job_id }) : h('span', { class: 'empty' }, 'not started')),
        h('td', { class: 'mono small' }, paramsText(r.t.parameters, names)),
        h('td', { class: 'num' }, r.t.seed ?? '—'),
        h('td', {}, trialBadge(r.t.status)),
        h('td', { class: 'num' }, fmtObjective(sweep, r.t.objective)),
        h('td', { class: 'num' }, r.t.best_epoch ?? '—'))),
      'This sweep has no trials.'));
  }

  function render() {
    renderSummary();
    renderBoard();
    drawChart();
  }

  // one dataset per trial that has a job, styled by its index (stable as trials come and go)
  function drawChart() {
    if (!chart || !sweep) return;
    const names = sweepNames(sweep);
    const trials = (sweep.trials || []).filter((t) => t.job_id && curves.has(t.job_id));
    chart.data.datasets = trials.map((t) => {
      const c = curves.get(t.job_id);
      const best = isBestTrial(sweep, t);
      return {
        label: `#${t.index} ${paramsText(t.parameters, names)}${t.seed !== null && t.seed !== undefined ? ` seed ${t.seed}` : ''}${best ? ' *' : ''}`,
        data: c.steps.map((x, k) => ({ x, y: c.values[k] })),
        ...seriesStyle(t.index, true),
        borderWidth: best ? 3 : 1.5,
      };
    });
    chart.options.plugins.legend.display = chart.data.datasets.length > 0;
    chart.update('none');
    fig.dataset.series = String(chart.data.datasets.length);
    fig.dataset.points = String(chart.data.datasets.reduce((n, d) => n + d.data.length, 0));
  }

  // the curves of trials still running (and, once, of each finished one); finished ones are kept
  async function refreshCurves() {
    const want = (sweep.trials || []).filter((t) => t.job_id && !(curves.has(t.job_id) && curves.get(t.job_id).final));
    await Promise.all(want.map(async (t) => {
      try {
        const r = await api('GET', `${JOBS}/${encodeURIComponent(t.job_id)}/metrics?names=${metric}&max_points=500`, { signal: ac.signal });
        const s = (r.series && r.series[metric]) || { steps: [], values: [] };
        curves.set(t.job_id, { steps: s.steps || [], values: s.values || [], final: FINAL.has(t.status) });
      } catch (e) {
        if (e.name !== 'AbortError' && e.status !== 404) notice(`Cannot load the curve of ${t.job_id}: ${e.message}`, 'error');
      }
    }));
  }

  let busy = null;
  let again = false;
  // one refresh at a time; a request for another while one runs makes it run once more afterwards
  async function refresh() {
    if (busy) { again = true; return busy; }
    busy = (async () => {
      do {
        again = false;
        try {
          sweep = await api('GET', `${SWEEPS}/${encodeURIComponent(id)}`, { signal: ac.signal });
          const m = objectiveOf(sweep).metric;
          if (m !== metric && METRICS.some((x) => x.name === m && x.from === 'validation')) { // valid_loss sweeps chart valid_loss
            metric = m;
            curves.clear();
            const label = METRICS.find((x) => x.name === m).label;
            caption.firstChild.textContent = `${label} by trial`;
            fig.dataset.metric = metric;
            if (chart) {
              const y = chart.options.scales.y;
              y.title.text = label;
              y.suggestedMin = y.suggestedMax = undefined;
              y.ticks.callback = (v) => fmtNum(v, 3);
            }
          }
          renderSummary();
          renderBoard();
          await refreshCurves();
          drawChart();
        } catch (e) {
          if (e.name === 'AbortError') return;
          notice(e.status === 404 ? `Sweep ${id} does not exist.` : `Cannot load sweep ${id}: ${e.message}`, 'error');
          if (e.status === 404) { ended = true; setLive('off', 'Not live.'); return; }
        }
      } while (again && !ac.signal.aborted);
    })();
    try { await busy; } finally { busy = null; }
    return undefined;
  }

  const pending = new Map();
  const soon = (key, fn) => { if (!pending.has(key)) pending.set(key, later(() => { pending.delete(key); fn(); }, 300)); };

  function logEvent(ev) {
    if (ev.id) lastEventId = ev.id;
    const d = ev.data || {};
    let text = ev.message;
    if (!text) {
      const names = sweep ? sweepNames(sweep) : new Map();
      if (ev.type === 'trial_started') text = `trial ${d.index} started: ${d.job_id || '—'} ${paramsText(d.parameters, names)}`;
      else if (ev.type === 'trial_finished') text = `trial ${d.index} ${d.status || 'finished'}: objective ${fmtNum(d.objective)}`;
      else if (ev.type === 'new_best') text = `new best: trial ${d.index} ${paramsText(d.parameters, names)} objective ${fmtNum(d.objective)}`;
      else if (ev.type === 'status') text = `sweep ${d.status}`;
      else text = ev.type;
    }
    const li = h('li', { class: `lv-${ev.level || 'info'}`, dataset: { type: ev.type } },
      h('time', {}, fmtTime(ev.created_at)), ' ',
      ev.level && ev.level !== 'info' ? h('strong', {}, `${ev.level.toUpperCase()}: `) : null, text);
    logList.append(li);
    while (logList.children.length > 500) logList.firstChild.remove();
  }

  function onEvent(ev) {
    logEvent(ev);
    soon('sweep', refresh); // a trial started or finished, a new best, the sweep's status: all show in the sweep
  }

  function setLive(mode, text) {
    live.dataset.mode = mode;
    live.textContent = text;
  }

  // ---- live updates: the sweep's event stream (SSE through fetch()), polling as the fallback; in both
  // modes the sweep and its running trials' curves are re-read every POLL_MS (curve points come with the
  // trials' own validation events, not with the sweep's)

  let streamFailures = 0;
  async function stream() {
    setLive('sse', 'Live: streaming events (server-sent events).');
    let got = false;
    try {
      const endedCleanly = await readEventStream(`${SWEEPS}/${encodeURIComponent(id)}/events?stream=true`, lastEventId, ac.signal,
        (type, data, eid) => { got = true; onEvent({ ...data, type: data.type || type, id: data.id || eid }); });
      if (endedCleanly) { finish(); return; }
    } catch (e) {
      if (ac.signal.aborted) return;
      if (e.status === 404) { notice(`Sweep ${id} does not exist.`, 'error'); setLive('off', 'Not live.'); return; }
    }
    if (ac.signal.aborted) return;
    streamFailures = got ? 0 : streamFailures + 1;
    if (streamFailures >= 3) { pollEventsLoop(); return; } // streaming keeps failing: poll instead
    setLive('sse', 'Live: reconnecting…');
    later(stream, 1000 * streamFailures);
  }

  async function pollEventsLoop() {
    setLive('poll', `Live: polling every ${POLL_MS / 1000} s.`);
    try {
      for (let page = 0; page < 20; page++) {
        const q = `${SWEEPS}/${encodeURIComponent(id)}/events?limit=100${lastEventId ? `&after=${encodeURIComponent(lastEventId)}` : ''}`;
        const r = await api('GET', q, { signal: ac.signal });
        for (const ev of r.data) logEvent(ev);
        if (!r.has_more) break;
      }
      await refresh();
      if (sweep && FINAL.has(sweep.status)) { finish(); return; }
    } catch (e) {
      if (ac.signal.aborted) return;
      notice(`Polling failed (retrying): ${e.message}`, 'error');
    }
    if (!ac.signal.aborted) later(pollEventsLoop, POLL_MS);
  }

  async function tick() { // SSE mode: the curves of running trials grow between the sweep's events
    if (ended || ac.signal.aborted || live.dataset.mode === 'poll') return; // polling re-reads everything itself
    await refresh();
    if (!ended && !ac.signal.aborted) later(tick, POLL_MS);
  }

  function finish() {
    ended = true;
    refresh().then(() => setLive('ended', sweep && FINAL.has(sweep.status) ? `The sweep ${sweep.status}; nothing more will come.` : 'The event stream ended.'));
  }

  (async () => {
    await refresh();
    if (!sweep) { setLive('off', 'Not live.'); return; }
    const canStream = !forcePoll && typeof ReadableStream !== 'undefined' && 'body' in Response.prototype;
    if (canStream) { stream(); later(tick, POLL_MS); } else pollEventsLoop();
  })();

  return {
    cleanup() {
      ac.abort();
      for (const t of timers) clearTimeout(t);
      if (chart) chart.destroy();
    },
  };
}

// ---------------------------------------------------------------- storage

function fmtBytes(n) {
  if (n === null || n === undefined || n < 0) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// Where each deletable kind is deleted (docs/api.md, Deleting and disk usage).
const DELETE_PATH = { file: '/v1/files/', model: '/v1/models/', 'fine_tuning.job': `${JOBS}/` };
const KIND_WORD = { file: 'upload', model: 'model', 'fine_tuning.job': 'job' };

function storageView(view) {
  const ac = new AbortController();
  const body = h('div', { id: 'storage' }, h('p', {}, 'Loading…'));
  view.append(h('div', { class: 'titlebar' }, h('h1', {}, 'Storage')), body);
  let timer = null;

  async function remove(item) {
    const word = KIND_WORD[item.object] || item.object;
    if (!window.confirm(`Delete ${word} ${item.id} (${fmtBytes(item.bytes)})? This cannot be undone.`)) return;
    try {
      await api('DELETE', DELETE_PATH[item.object] + encodeURIComponent(item.id), { signal: ac.signal });
      notice(`Deleted ${word} ${item.id}.`);
    } catch (e) {
      if (e.name !== 'AbortError') notice(`Cannot delete ${item.id}: ${e.message}`, 'error');
    }
    clearTimeout(timer);
    refresh();
  }

  async function refresh() {
    try {
      const st = await api('GET', '/v1/storage', { signal: ac.signal });
      const d = st.disk;
      const low = d.min_free_bytes > 0 && d.free_bytes >= 0 && d.free_bytes < d.min_free_bytes;
      body.replaceChildren(
        h('p', { id: 'disk-line', dataset: { low: String(low) } },
          `Disk: ${fmtBytes(d.free_bytes)} free of ${fmtBytes(d.total_bytes)}`,
          d.min_free_bytes > 0 ? ` (new uploads and jobs are refused below ${fmtBytes(d.min_free_bytes)})` : '',
          low ? h('strong', {}, ' — low: uploads and new jobs are refused') : '',
          `. Reclaimed since start: ${fmtBytes(st.reclaimed_bytes)}.`),
        h('section', { 'aria-labelledby': 'h-usage' },
          h('h2', { id: 'h-usage' }, st.users.length > 1 ? 'Usage per user' : 'Your usage'),
          table('Bytes on disk per user', ['User', 'Uploads', 'Models', 'Jobs', 'Total'],
            st.users.map((u) => h('tr', { dataset: { user: u.name } },
              h('td', {}, u.name), h('td', { class: 'num' }, fmtBytes(u.file_bytes)),
              h('td', { class: 'num' }, fmtBytes(u.model_bytes)), h('td', { class: 'num' }, fmtBytes(u.job_bytes)),
              h('td', { class: 'num' }, fmtBytes(u.total_bytes)))),
            'No user.')),
        h('section', { 'aria-labelledby': 'h-largest' },
          h('h2', { id: 'h-largest' }, 'Largest items'),
          h('p', { class: 'help' }, 'Only finished jobs can be deleted; a job keeps its model\'s weights until the model is deleted.'),
          table('Largest items', ['Item', 'Kind', 'Owner', 'Size', ''],
            st.largest.map((it) => h('tr', { dataset: { item: it.id } },
              h('td', { class: 'mono' }, it.object === 'fine_tuning.job' ? h('a', { href: `#/jobs/${encodeURIComponent(it.id)}` }, it.id) : it.id),
              h('td', {}, KIND_WORD[it.object] || it.object), h('td', {}, it.owner || '—'),
              h('td', { class: 'num' }, fmtBytes(it.bytes)),
              h('td', {}, h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${it.id}`, onclick: () => remove(it) }, 'Delete')))),
            'Nothing stored.')));
    } catch (e) {
      if (e.name !== 'AbortError') notice(`Cannot read storage: ${e.message}`, 'error');
    }
    if (!ac.signal.aborted) timer = setTimeout(refresh, POLL_MS * 5);
  }
  refresh();
  return { cleanup() { ac.abort(); clearTimeout(timer); } };
}

// ---------------------------------------------------------------- start

$('#signout').addEventListener('click', () => signOut('Signed out.'));
window.addEventListener('hashchange', mount);
// Chart.js is a deferred classic script: it has run before this module (modules are deferred too, and
// run in document order).
// The daemon's sign-in line links /?token=ct_...: take it, then drop it from the address bar and history.
const linkToken = new URLSearchParams(location.search).get('token');
if (linkToken) {
  const q = new URLSearchParams(location.search);
  q.delete('token');
  history.replaceState(null, '', location.pathname + (q.toString() ? `?${q}` : '') + location.hash);
  signIn(linkToken).then((e) => { if (e) { signInError = e; mount(); signInError = ''; } });
} else {
  mount();
}
