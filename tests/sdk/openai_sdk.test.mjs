// tests/sdk/openai_sdk.test.mjs — drive a real coretuned with OpenAI's official JavaScript client
// library (npm `openai`, pinned by package-lock.json), unchanged: only SDK methods, no raw HTTP.
// Run by tests/e2e/test_openai_sdk.py, which starts the daemon and passes
//   CT_BASE_URL=http://127.0.0.1:PORT/v1  CT_TOKEN=<admin token>  [CT_SANITIZED=1]
// Exits 0 and prints "openai sdk: all checks passed" when every check passed; any failure throws.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { VERSION } from 'openai/version';

const baseURL = process.env.CT_BASE_URL;
const apiKey = process.env.CT_TOKEN;
assert.ok(baseURL && apiKey, 'CT_BASE_URL and CT_TOKEN must be set');
const SLOW = process.env.CT_SANITIZED === '1';
const JOB_TIMEOUT_MS = (SLOW ? 300 : 120) * 1000;

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000 });
const jobs = client.fineTuning.jobs;
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const STATUSES = new Set(['validating_files', 'queued', 'running', 'paused', ...TERMINAL]);
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The request body: OpenAI's documented fields plus coretuned's (`method.core_tuning`, `data`), which the
// SDK passes through untouched.
function spec(extra = {}) {
  return {
    model: 'resnet20',
    training_file: 'fashion-mnist-train',
    validation_file: 'fashion-mnist-test',
    seed: 1,
    suffix: 'sdk',
    metadata: { suite: 'openai-sdk', sdk_version: VERSION },
    method: {
      type: 'core_tuning',
      core_tuning: { hyperparameters: { n_epochs: 2, batch_size: 32, gradient_accumulation_steps: 1, threads: 1 } },
    },
    data: { train_limit: SLOW ? 128 : 256, valid_limit: SLOW ? 64 : 128 },
    ...extra,
  };
}

const isInt = (v) => Number.isInteger(v);
const isIntOrNull = (v) => v === null || Number.isInteger(v);

// The fields the SDK's FineTuningJob type promises.
function checkJob(job, what) {
  assert.equal(job.object, 'fine_tuning.job', `${what}: object`);
  assert.match(job.id, /^ftjob-/, `${what}: id`);
  assert.ok(STATUSES.has(job.status), `${what}: status ${job.status}`);
  assert.ok(isInt(job.created_at) && job.created_at > 1.6e9, `${what}: created_at ${job.created_at}`);
  assert.ok(isIntOrNull(job.finished_at), `${what}: finished_at ${job.finished_at}`);
  assert.equal(typeof job.model, 'string', `${what}: model`);
  assert.equal(typeof job.training_file, 'string', `${what}: training_file`);
  assert.ok(job.validation_file === null || typeof job.validation_file === 'string', `${what}: validation_file`);
  assert.equal(typeof job.organization_id, 'string', `${what}: organization_id`);
  assert.ok(Array.isArray(job.result_files), `${what}: result_files`);
  assert.ok(isIntOrNull(job.trained_tokens), `${what}: trained_tokens`);
  assert.ok(isInt(job.seed), `${what}: seed`);
  assert.equal(typeof job.hyperparameters, 'object', `${what}: hyperparameters`);
  assert.ok(job.fine_tuned_model === null || typeof job.fine_tuned_model === 'string', `${what}: fine_tuned_model`);
  assert.ok(job.error === null || (typeof job.error === 'object' && typeof job.error.message === 'string'),
    `${what}: error`);
  if (job.estimated_finish !== undefined) assert.ok(isIntOrNull(job.estimated_finish), `${what}: estimated_finish`);
  if (job.integrations !== undefined && job.integrations !== null) assert.ok(Array.isArray(job.integrations));
  if (job.method) assert.equal(typeof job.method.type, 'string', `${what}: method.type`);
  return job;
}

function checkEvent(e, what) {
  assert.equal(e.object, 'fine_tuning.job.event', `${what}: object`);
  assert.match(e.id, /^ftevent-\d+$/, `${what}: id`);
  assert.ok(isInt(e.created_at), `${what}: created_at`);
  assert.ok(['info', 'warn', 'error'].includes(e.level), `${what}: level ${e.level}`);
  assert.equal(typeof e.message, 'string', `${what}: message`);
  if (e.type !== undefined) assert.ok(['message', 'metrics', 'status', 'validation', 'checkpoint', 'error']
    .includes(e.type), `${what}: type ${e.type}`);
}

function checkCheckpoint(c, jobId, what) {
  assert.equal(c.object, 'fine_tuning.job.checkpoint', `${what}: object`);
  assert.equal(typeof c.id, 'string', `${what}: id`);
  assert.ok(isInt(c.created_at), `${what}: created_at`);
  assert.equal(c.fine_tuning_job_id, jobId, `${what}: fine_tuning_job_id`);
  assert.equal(typeof c.fine_tuned_model_checkpoint, 'string', `${what}: fine_tuned_model_checkpoint`);
  assert.ok(isInt(c.step_number) && c.step_number >= 1, `${what}: step_number ${c.step_number}`);
  assert.equal(typeof c.metrics, 'object', `${what}: metrics`);
}

const eventNum = (e) => Number(e.id.split('-').pop());

async function waitFor(id, pred, what, timeoutMs = JOB_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let job;
  while (Date.now() < deadline) {
    job = checkJob(await jobs.retrieve(id), `retrieve ${id}`);
    if (pred(job)) return job;
    if (TERMINAL.has(job.status)) break;
    await sleep(100);
  }
  throw new Error(`${what}: job ${id} is ${job?.status} (step ${job?.progress?.step}); error ${JSON.stringify(job?.error)}`);
}

async function collect(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

// An SDK call that must fail with `cls` and `status` (and, when given, error.code / error.param).
async function expectError(what, cls, status, fn, { code, param } = {}) {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof cls, `${what}: want ${cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
    assert.ok(e instanceof OpenAI.APIError, `${what}: not an APIError`);
    assert.equal(e.status, status, `${what}: status`);
    assert.equal(typeof e.error?.message, 'string', `${what}: error.message`);
    assert.equal(typeof e.type, 'string', `${what}: error.type`);
    if (code !== undefined) assert.equal(e.code, code, `${what}: error.code`);
    if (param !== undefined) assert.equal(e.param, param, `${what}: error.param`);
    return e;
  }
  throw new Error(`${what}: the call succeeded; want ${cls.name} ${status}`);
}

log(`openai ${VERSION} on node ${process.version} against ${baseURL}`);

// ---- errors: the SDK maps coretuned's statuses and error bodies onto its exception classes ----
await expectError('retrieve unknown id', OpenAI.NotFoundError, 404, () => jobs.retrieve('ftjob-doesnotexist0000000'));
await expectError('cancel unknown id', OpenAI.NotFoundError, 404, () => jobs.cancel('ftjob-doesnotexist0000000'));
await expectError('listEvents unknown id', OpenAI.NotFoundError, 404,
  () => jobs.listEvents('ftjob-doesnotexist0000000'));
await expectError('checkpoints unknown id', OpenAI.NotFoundError, 404,
  () => jobs.checkpoints.list('ftjob-doesnotexist0000000'));
await expectError('bad hyperparameter', OpenAI.BadRequestError, 400, () => jobs.create(spec({
  method: { type: 'core_tuning', core_tuning: { hyperparameters: { n_epochs: 2, learning_rate: -1 } } },
})), { code: 'invalid_value', param: 'method.core_tuning.hyperparameters.learning_rate' });
await expectError('unknown model', OpenAI.BadRequestError, 400, () => jobs.create(spec({ model: 'gpt-nope' })));
const badKey = new OpenAI({ baseURL, apiKey: 'ct_not_a_valid_token', maxRetries: 0 });
await expectError('wrong apiKey', OpenAI.AuthenticationError, 401, () => badKey.fineTuning.jobs.list());
await expectError('wrong apiKey (models)', OpenAI.AuthenticationError, 401, () => badKey.models.list());
log('errors: NotFoundError 404, BadRequestError 400, AuthenticationError 401');

// ---- create + retrieve: the tiny real job A ----
const a = checkJob(await jobs.create(spec()), 'create A');
assert.ok(['validating_files', 'queued', 'running'].includes(a.status), `create A: status ${a.status}`);
assert.equal(a.model, 'resnet20');
assert.equal(a.training_file, 'fashion-mnist-train');
assert.equal(a.validation_file, 'fashion-mnist-test');
assert.equal(a.seed, 1);
assert.equal(a.fine_tuned_model, null);
assert.equal(a.finished_at, null);
assert.deepEqual(a.metadata, spec().metadata);
assert.equal(a.user_provided_suffix, 'sdk');
assert.equal(a.method.type, 'core_tuning');
assert.equal(a.hyperparameters.n_epochs, 2);
assert.equal(a.hyperparameters.batch_size, 32);
const ra = checkJob(await jobs.retrieve(a.id), 'retrieve A');
assert.equal(ra.id, a.id);
assert.equal(ra.created_at, a.created_at);
log(`created A ${a.id} (${a.status})`);

// ---- pause / resume / cancel on job B while A trains (the daemon runs 2 workers) ----
assert.equal(typeof jobs.pause, 'function', `openai ${VERSION} has no fineTuning.jobs.pause`);
assert.equal(typeof jobs.resume, 'function', `openai ${VERSION} has no fineTuning.jobs.resume`);
const b = checkJob(await jobs.create(spec({ seed: 2, suffix: 'sdk-b', metadata: { role: 'pause' } })), 'create B');
await waitFor(b.id, (j) => j.status === 'running' && (j.progress?.step ?? 0) >= 1, 'B to train a step');
const pb = checkJob(await jobs.pause(b.id), 'pause B');
assert.equal(pb.id, b.id);
assert.equal(pb.status, 'paused');
// the worker writes a checkpoint and leaves within a step: a status event {status: paused, step}
let pausedEvent;
for (const deadline = Date.now() + JOB_TIMEOUT_MS; !pausedEvent && Date.now() < deadline; await sleep(100)) {
  pausedEvent = (await collect(jobs.listEvents(b.id, { limit: 100 })))
    .find((e) => e.type === 'status' && e.data?.status === 'paused' && isInt(e.data?.step));
}
assert.ok(pausedEvent, 'B: no "paused at step N" event');
const ckB = (await jobs.checkpoints.list(b.id)).data;
assert.ok(ckB.length >= 1, 'B: pause wrote no checkpoint');
checkCheckpoint(ckB[0], b.id, 'B checkpoint');
assert.equal(ckB[0].step_number, pausedEvent.data.step, 'B: newest checkpoint is the pause step');
assert.equal((await jobs.retrieve(b.id)).status, 'paused');
await expectError('pause paused', OpenAI.ConflictError, 409, () => jobs.pause(b.id), { code: 'invalid_state' });
const rb = checkJob(await jobs.resume(b.id), 'resume B');
assert.ok(['queued', 'running'].includes(rb.status), `resume B: status ${rb.status}`);
await expectError('resume not paused', OpenAI.ConflictError, 409, () => jobs.resume(b.id), { code: 'invalid_state' });
const cb = checkJob(await jobs.cancel(b.id), 'cancel B');
assert.equal(cb.status, 'cancelled');
assert.ok(isInt(cb.finished_at), 'cancel B: finished_at');
assert.equal(cb.fine_tuned_model, null);
await expectError('cancel cancelled', OpenAI.ConflictError, 409, () => jobs.cancel(b.id), { code: 'invalid_state' });
log(`B ${b.id}: paused at step ${pausedEvent.data.step} (checkpoint ${ckB[0].id}), resumed, cancelled`);

// ---- Idempotency-Key through the SDK's per-request `headers` option (the SDK's own `idempotencyKey`
// option sends nothing: OpenAI's client sets no idempotency header). Same key + same body = the same
// job; same key + another body = 422 UnprocessableEntityError. ----
const idem = { headers: { 'Idempotency-Key': `sdk-test-${Date.now()}` } };
const c1 = checkJob(await jobs.create(spec({ seed: 3, suffix: 'sdk-c' }), idem), 'create C');
const c2 = checkJob(await jobs.create(spec({ seed: 3, suffix: 'sdk-c' }), idem), 'create C again');
assert.equal(c2.id, c1.id, 'same Idempotency-Key and body must return the first job');
await expectError('idempotency key reused', OpenAI.UnprocessableEntityError, 422,
  () => jobs.create(spec({ seed: 4 }), idem), { code: 'idempotency_key_reused' });
assert.equal(checkJob(await jobs.cancel(c1.id), 'cancel C').status, 'cancelled');
log(`C ${c1.id}: idempotent create, cancelled`);

// ---- list: one page, the envelope, and auto-pagination ----
const created = [c1.id, b.id, a.id]; // newest first
const page = await jobs.list({ limit: 1 });
assert.equal(page.data.length, 1);
assert.equal(page.has_more, true);
assert.equal(page.hasNextPage(), true);
checkJob(page.data[0], 'list page 1');
assert.equal(page.data[0].id, c1.id, 'list is newest first');
const page2 = await page.getNextPage();
assert.equal(page2.data.length, 1);
assert.equal(page2.data[0].id, b.id);
const listed = [];
for await (const job of client.fineTuning.jobs.list({ limit: 1 })) listed.push(checkJob(job, 'auto-paginated').id);
assert.deepEqual(listed, created, 'auto-pagination with limit 1 must walk every job once, newest first');
const whole = await jobs.list();
assert.equal(whole.has_more, false);
assert.deepEqual(whole.data.map((j) => j.id), created);
const pages = [];
for await (const p of (await jobs.list({ limit: 2 })).iterPages()) pages.push(p.data.length);
assert.deepEqual(pages, [2, 1]);
log(`list: ${listed.length} jobs over ${listed.length} pages of 1`);

// ---- wait for A to succeed by polling retrieve ----
const done = await waitFor(a.id, (j) => j.status === 'succeeded', 'A to succeed');
assert.equal(typeof done.fine_tuned_model, 'string');
assert.equal(done.fine_tuned_model, `ft:resnet20:sdk:${a.id}`);
assert.ok(isInt(done.finished_at) && done.finished_at >= done.created_at, 'A: finished_at');
assert.ok(isInt(done.started_at ?? done.created_at));
assert.equal(done.error, null);
log(`A succeeded: ${done.fine_tuned_model}`);

// ---- events: one page, then auto-pagination in small pages ----
const allEvents = (await jobs.listEvents(a.id, { limit: 1000 }));
assert.equal(allEvents.has_more, false);
assert.ok(allEvents.data.length >= 5, `A: only ${allEvents.data.length} events`);
allEvents.data.forEach((e, i) => checkEvent(e, `event ${i}`));
const firstPage = await jobs.listEvents(a.id, { limit: 3 });
assert.equal(firstPage.data.length, 3);
assert.equal(firstPage.has_more, true);
const walked = await collect(jobs.listEvents(a.id, { limit: 3 }));
assert.deepEqual(walked.map((e) => e.id), allEvents.data.map((e) => e.id), 'event auto-pagination');
for (let i = 1; i < walked.length; i++) assert.ok(eventNum(walked[i]) > eventNum(walked[i - 1]), 'event order');
const statuses = walked.filter((e) => e.type === 'status').map((e) => e.data.status);
assert.equal(statuses[0], 'queued');
assert.equal(statuses.at(-1), 'succeeded');
assert.ok(statuses.includes('running'));
const last = walked.filter((e) => e.type === 'status').at(-1);
assert.equal(last.data.fine_tuned_model, done.fine_tuned_model);
assert.ok(walked.some((e) => e.type === 'metrics'), 'A: no metrics events');
log(`events: ${walked.length} (auto-paginated in 3s)`);

// ---- checkpoints: one per epoch, newest first, paginated ----
const ck = await jobs.checkpoints.list(a.id);
assert.equal(ck.has_more, false);
assert.ok(ck.data.length >= 2, `A: ${ck.data.length} checkpoints, want one per epoch`);
ck.data.forEach((c, i) => checkCheckpoint(c, a.id, `checkpoint ${i}`));
for (let i = 1; i < ck.data.length; i++) assert.ok(ck.data[i].step_number < ck.data[i - 1].step_number, 'newest first');
assert.equal(ck.data[0].step_number, done.progress?.total_steps ?? ck.data[0].step_number);
assert.ok(ck.data[0].fine_tuned_model_checkpoint.startsWith(done.fine_tuned_model));
const ckWalked = await collect(jobs.checkpoints.list(a.id, { limit: 1 }));
assert.deepEqual(ckWalked.map((c) => c.id), ck.data.map((c) => c.id), 'checkpoint auto-pagination');
log(`checkpoints: ${ck.data.map((c) => `${c.id}@${c.step_number}`).join(', ')}`);

// ---- models: OpenAI's Model shape; the fine-tuned model is listed and retrievable by its ft:… id ----
const models = await client.models.list();
assert.ok(models.data.length >= 1);
for (const m of models.data) {
  assert.equal(m.object, 'model', `model ${m.id}: object`);
  assert.equal(typeof m.id, 'string');
  assert.ok(isInt(m.created), `model ${m.id}: created`);
  assert.equal(typeof m.owned_by, 'string', `model ${m.id}: owned_by`);
}
const modelIds = models.data.map((m) => m.id);
assert.ok(modelIds.includes('resnet20'), `models: ${modelIds}`);
assert.ok(modelIds.includes(done.fine_tuned_model), `models: ${modelIds}`);
const base = await client.models.retrieve('resnet20');
assert.equal(base.id, 'resnet20');
assert.equal(base.object, 'model');
const ft = await client.models.retrieve(done.fine_tuned_model);
assert.equal(ft.id, done.fine_tuned_model);
assert.equal(ft.object, 'model');
await expectError('unknown model', OpenAI.NotFoundError, 404, () => client.models.retrieve('resnet-nope'));
log(`models: ${models.data.length}, retrieve('${done.fine_tuned_model}') ok`);

// ---- A is finished: cancel and pause are conflicts ----
await expectError('cancel succeeded', OpenAI.ConflictError, 409, () => jobs.cancel(a.id), { code: 'invalid_state' });
await expectError('pause succeeded', OpenAI.ConflictError, 409, () => jobs.pause(a.id), { code: 'invalid_state' });

// ---- models.delete: OpenAI's ModelDeleted shape; a base architecture is 403, a deleted one 404 ----
const gone = await client.models.delete(done.fine_tuned_model);
assert.deepEqual({ id: gone.id, object: gone.object, deleted: gone.deleted },
  { id: done.fine_tuned_model, object: 'model', deleted: true });
await expectError('model deleted twice', OpenAI.NotFoundError, 404, () => client.models.delete(done.fine_tuned_model));
await expectError('delete a base model', OpenAI.PermissionDeniedError, 403, () => client.models.delete('resnet20'), { code: 'permission_denied' });
await expectError('retrieve a deleted model', OpenAI.NotFoundError, 404, () => client.models.retrieve(done.fine_tuned_model));
log('models.delete ok');

log('openai sdk: all checks passed');
