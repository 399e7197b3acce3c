// The admin routes over HTTP with the stand-in trainer: off without a token (404 as if absent), 401 without the
// right bearer token, the token kept out of the logs, strict validation of POST /admin/finetune, the job answers,
// server-sent events, cancel, job counts in /metrics and model activation. The real trainer: admin-e2e.test.ts.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { GenerationService } from '../src/generation/generation-service.js';
import { buildApp, loggerOptions } from '../src/http/app.js';
import type { Job } from '../src/jobs/job-record.js';
import { readServerSentEvents } from '../src/jobs/server-sent-events.js';
import { serviceOptions } from '../src/serve.js';
import { FIXTURE_MODEL, TOKEN, adminFolders, auth, fakeTrainerRunner } from './helpers/admin.js';
import { build, testSettings } from './helpers/build.js';

const adminRoutes = [
  ['POST', '/admin/finetune'],
  ['GET', '/admin/jobs'],
  ['GET', '/admin/jobs/ft-00000000-000000'],
  ['GET', '/admin/jobs/ft-00000000-000000/events'],
  ['DELETE', '/admin/jobs/ft-00000000-000000'],
  ['POST', `/admin/models/${FIXTURE_MODEL}/activate`],
] as const;

const finetune = { backbone: 'unet-eps', guidance: { min: 0.5, max: 4 }, steps: 20, batch_size: 2, seed: 7, name: 'student-one' };

test('without a token the admin routes answer 404, exactly as a route that does not exist', async (t) => {
  const folders = await adminFolders(t);
  const { app } = await build(t, { settings: { ...folders.settings, adminToken: undefined } });
  for (const [method, url] of [...adminRoutes, ['GET', '/admin/nothing-here'] as const]) {
    for (const headers of [{}, auth]) {
      const response = await app.inject({ method, url, headers, ...(method === 'POST' ? { payload: finetune } : {}) });
      assert.equal(response.statusCode, 404, `${method} ${url}`);
      assert.deepEqual(response.json(), { statusCode: 404, code: 'SNOOPI_ROUTE_NOT_FOUND', error: 'Not Found', message: `Route ${method} ${url} not found` });
    }
  }
  assert.equal(app.jobs, null);
});

test('with a token, a request without the right bearer token is 401 before anything else', async (t) => {
  const folders = await adminFolders(t);
  const { app } = await build(t, { settings: folders.settings, jobRunner: fakeTrainerRunner(folders, 'ok') });
  const wrong = [undefined, 'Bearer wrong', `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, 'Bearer', `Bearer ${TOKEN} extra`, TOKEN];
  for (const authorization of wrong) {
    for (const [method, url] of adminRoutes) {
      const response = await app.inject({ method, url, headers: authorization === undefined ? {} : { authorization }, payload: method === 'POST' ? { bad: 1 } : undefined });
      assert.equal(response.statusCode, 401, `${method} ${url} with ${authorization}`);
      assert.equal(response.headers['www-authenticate'], 'Bearer realm="snoopi-admin"');
      assert.deepEqual(response.json(), { statusCode: 401, code: 'SNOOPI_UNAUTHORIZED', error: 'Unauthorized', message: 'Missing or invalid bearer token' });
    }
  }
  for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `Bearer  ${TOKEN} `]) {
    const response = await app.inject({ method: 'GET', url: '/admin/jobs', headers: { authorization } });
    assert.equal(response.statusCode, 200, authorization);
    assert.deepEqual(response.json(), { data: [] });
  }
});

test('the token never reaches the logs, even at trace level', async (t) => {
  const folders = await adminFolders(t);
  const settings = testSettings({ ...folders.settings, logLevel: 'trace' });
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString('utf8'));
      callback();
    },
  });
  const logger = pino({ level: 'trace', ...loggerOptions }, sink);
  const service = await GenerationService.create(serviceOptions(settings));
  const app = buildApp(settings, service, { logger, jobRunner: fakeTrainerRunner(folders, 'ok') });
  t.after(() => app.close());
  await app.ready();
  await app.inject({ method: 'GET', url: '/admin/jobs', headers: auth });
  await app.inject({ method: 'GET', url: '/admin/jobs', headers: { authorization: `Bearer ${TOKEN}-wrong` } });
  await app.inject({ method: 'POST', url: '/admin/finetune', headers: auth, payload: { backbone: 'nope' } });
  // What a careless log line with the request's headers would print is censored too.
  app.log.info({ req: { headers: { ...auth } }, headers: { ...auth } }, 'headers');
  const text = lines.join('');
  assert.match(text, /"url":"\/admin\/jobs"/);
  assert.match(text, /"authorization":"\[redacted\]"/);
  assert.ok(!text.includes(TOKEN), 'the token is in the logs');
});

test('POST /admin/finetune validates strictly; an unknown backbone is a 400 that lists the known ones', async (t) => {
  const folders = await adminFolders(t);
  await writeFile(join(folders.baseModelsDir, 'teacher-unet-eps.pt'), 'a checkpoint');
  await mkdir(join(folders.modelsDir, 'students'));
  const { app } = await build(t, { settings: folders.settings, jobRunner: fakeTrainerRunner(folders, 'slow') });
  const cases: [unknown, number, string, string][] = [
    [{ ...finetune, lr: 1 }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/lr is not a known field'],
    [{ ...finetune, backbone: 'unet-v' }, 400, 'SNOOPI_UNKNOWN_BACKBONE', 'No teacher checkpoint for backbone unet-v; known backbones: unet-eps (trainer backbones without a teacher checkpoint yet: unet-v, dit)'],
    [{ ...finetune, backbone: '../../etc/passwd' }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/backbone must match pattern "^[a-z0-9][a-z0-9._-]{0,63}$"'],
    [{ ...finetune, name: '../escape' }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/name must match pattern "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"'],
    [{ ...finetune, method: 'dmd' }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/method must be one of pg-sb, sb'],
    [{ ...finetune, guidance: { min: 4, max: 1 } }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/guidance/min (4) must be below body/guidance/max (1)'],
    [{ ...finetune, guidance: { min: 0.5, max: 25 } }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/guidance/max must be <= 20'],
    [{ ...finetune, guidance: { fixed: 4.5 } }, 400, 'SNOOPI_VALIDATION', "Invalid request: body/guidance {fixed} is SB's fixed kappa; method pg-sb draws kappa from {min, max}"],
    [{ ...finetune, guidance: { min: 1, max: 2, fixed: 3 } }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/guidance/fixed is not a known field'],
    [{ ...finetune, steps: 0 }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/steps must be >= 1'],
    [{ ...finetune, batch_size: 2.5 }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/batch_size must be integer'],
    [{ ...finetune, seed: 1000 }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/seed must be <= 999'],
    [{ ...finetune, steps: '20' }, 400, 'SNOOPI_VALIDATION', 'Invalid request: body/steps must be integer'],
    [{ ...finetune, name: FIXTURE_MODEL }, 409, 'SNOOPI_NAME_TAKEN', `The model id ${FIXTURE_MODEL} is taken: a registered model has it`],
    [{ ...finetune, name: 'students' }, 409, 'SNOOPI_NAME_TAKEN', 'The model id students is taken: the models folder holds a file or folder of that name'],
  ];
  for (const [payload, status, code, message] of cases) {
    const response = await app.inject({ method: 'POST', url: '/admin/finetune', headers: auth, payload: payload as object });
    assert.deepEqual(response.json(), { statusCode: status, code, error: status === 400 ? 'Bad Request' : 'Conflict', message }, JSON.stringify(payload));
  }
  const plain = await app.inject({ method: 'POST', url: '/admin/finetune', headers: { ...auth, 'content-type': 'text/plain' }, payload: 'backbone=unet-eps' });
  assert.equal(plain.statusCode, 415);
  assert.deepEqual((await app.inject({ method: 'GET', url: '/admin/jobs', headers: auth })).json(), { data: [] });
});

test('a job: 202 with Location, listed, followed as server-sent events, cancelled; counted in /metrics', async (t) => {
  const folders = await adminFolders(t);
  await writeFile(join(folders.baseModelsDir, 'teacher-unet-eps.pt'), 'a checkpoint');
  const { app, url } = await build(t, { settings: folders.settings, jobRunner: fakeTrainerRunner(folders, 'slow'), listen: true });

  const created = await app.inject({ method: 'POST', url: '/admin/finetune', headers: auth, payload: finetune });
  assert.equal(created.statusCode, 202);
  const { job } = created.json() as { job: Job };
  assert.equal(created.headers.location, `/admin/jobs/${job.id}`);
  assert.deepEqual(job, {
    id: job.id,
    status: 'running',
    stage: 'training',
    runner: 'local',
    spec: { backbone: 'unet-eps', method: 'pg-sb', guidance: { min: 0.5, max: 4 }, steps: 20, batch_size: 2, seed: 7, name: 'student-one' },
    created_at: job.created_at,
    started_at: job.started_at,
    finished_at: null,
    progress: { step: 0, total: 20, eta_s: null },
    losses: {},
    kappa: null,
    metrics: {},
    model_id: null,
    error: null,
  });
  const conflict = await app.inject({ method: 'POST', url: '/admin/finetune', headers: auth, payload: finetune });
  assert.equal(conflict.json().message, `The model id student-one is taken: job ${job.id} is making it`);
  const queued = await app.inject({ method: 'POST', url: '/admin/finetune', headers: auth, payload: { backbone: 'unet-eps' } });
  const second = (queued.json() as { job: Job }).job;
  assert.deepEqual([second.status, second.spec], ['queued', { backbone: 'unet-eps', method: 'pg-sb', steps: 1000, batch_size: 32, seed: 0, name: `unet-eps-pg-sb-${second.id}` }]);

  // Events on a real socket: the current state at once, then every change, until the job ends.
  const stream = await fetch(`${url}/admin/jobs/${job.id}/events`, { headers: auth });
  assert.equal(stream.status, 200);
  assert.equal(stream.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const events: Job[] = [];
  const reading = (async () => {
    for await (const event of readServerSentEvents(stream.body!)) {
      assert.equal(event.event, 'job');
      events.push(JSON.parse(event.data) as Job);
      if (events.length === 3) await app.inject({ method: 'DELETE', url: `/admin/jobs/${job.id}`, headers: auth });
    }
  })();
  await reading;
  const last = events.at(-1)!;
  assert.equal(last.status, 'cancelled');
  assert.equal(events.filter((event) => event.stage === 'cancelling').length >= 1, true);
  const steps = events.map((event) => event.progress.step);
  assert.deepEqual(steps, [...steps].sort((a, b) => a - b));
  assert.deepEqual(events[1]!.losses, { student: 1 / events[1]!.progress.step, lora: 0.5 });
  assert.equal(events[1]!.kappa, 2.5);
  assert.deepEqual(events[1]!.progress.total, 100_000);

  const got = await app.inject({ method: 'GET', url: `/admin/jobs/${job.id}`, headers: auth });
  assert.deepEqual(got.json(), { job: last });
  const replay = await app.inject({ method: 'GET', url: `/admin/jobs/${job.id}/events`, headers: auth });
  assert.equal(replay.body, `id: 1\nevent: job\ndata: ${JSON.stringify(last)}\n\n`);
  const again = await app.inject({ method: 'DELETE', url: `/admin/jobs/${job.id}`, headers: auth });
  assert.deepEqual(again.json(), { statusCode: 409, code: 'SNOOPI_JOB_ENDED', error: 'Conflict', message: `Job ${job.id} has already ended (cancelled)` });
  const missing = await app.inject({ method: 'GET', url: '/admin/jobs/ft-00000000-000000', headers: auth });
  assert.deepEqual(missing.json(), { statusCode: 404, code: 'SNOOPI_JOB_NOT_FOUND', error: 'Not Found', message: 'Job ft-00000000-000000 not found' });

  // The queued job started when the first ended; cancel it too.
  const cancelled = await app.inject({ method: 'DELETE', url: `/admin/jobs/${second.id}`, headers: auth });
  assert.equal((cancelled.json() as { job: Job }).job.status, 'cancelled');
  const list = (await app.inject({ method: 'GET', url: '/admin/jobs', headers: auth })).json() as { data: Job[] };
  assert.deepEqual(
    list.data.map((entry) => [entry.id, entry.status]),
    [
      [second.id, 'cancelled'],
      [job.id, 'cancelled'],
    ],
  );
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  for (const [status, count] of [['queued', 0], ['running', 0], ['succeeded', 0], ['failed', 0], ['cancelled', 2]] as const) {
    assert.match(metrics, new RegExp(`^snoopi_jobs\\{status="${status}"\\} ${count}$`, 'm'));
  }
});

test("a failing trainer's error text is the job's error", async (t) => {
  const folders = await adminFolders(t);
  await writeFile(join(folders.baseModelsDir, 'teacher-unet-eps.pt'), 'a checkpoint');
  const { app } = await build(t, { settings: folders.settings, jobRunner: fakeTrainerRunner(folders, 'fail') });
  const { job } = (await app.inject({ method: 'POST', url: '/admin/finetune', headers: auth, payload: finetune })).json() as { job: Job };
  const events = await app.inject({ method: 'GET', url: `/admin/jobs/${job.id}/events`, headers: auth });
  const final = JSON.parse(events.body.trim().split('\n').at(-1)!.slice('data: '.length)) as Job;
  assert.equal(final.status, 'failed');
  assert.equal(final.error, 'trainer exited with code 2: config error: lora_rank must be in [1, 1024], got 0');
  assert.equal(final.model_id, null);
});

test('activation: an unknown model is 404; the active model activates again', async (t) => {
  const folders = await adminFolders(t);
  const { app } = await build(t, { settings: folders.settings, jobRunner: fakeTrainerRunner(folders, 'ok') });
  const unknown = await app.inject({ method: 'POST', url: '/admin/models/no-such-model/activate', headers: auth });
  assert.deepEqual(unknown.json(), { statusCode: 404, code: 'SNOOPI_MODEL_NOT_FOUND', error: 'Not Found', message: `Model no-such-model not found; known models: ${FIXTURE_MODEL}` });
  const same = await app.inject({ method: 'POST', url: `/admin/models/${FIXTURE_MODEL}/activate`, headers: auth });
  assert.deepEqual(same.json(), { active: FIXTURE_MODEL, previous: FIXTURE_MODEL });
});

test('shutting down ends open event streams and stops the local trainers; their jobs fail with the reason', async (t) => {
  const folders = await adminFolders(t);
  await writeFile(join(folders.baseModelsDir, 'teacher-unet-eps.pt'), 'a checkpoint');
  const { app, url } = await build(t, { settings: folders.settings, jobRunner: fakeTrainerRunner(folders, 'slow'), listen: true });
  const { job } = (await app.inject({ method: 'POST', url: '/admin/finetune', headers: auth, payload: finetune })).json() as { job: Job };
  const stream = await fetch(`${url}/admin/jobs/${job.id}/events`, { headers: auth });
  const events: Job[] = [];
  const reading = (async () => {
    for await (const event of readServerSentEvents(stream.body!)) events.push(JSON.parse(event.data) as Job);
  })();
  while (events.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  await app.lifecycle.shutdown('test');
  await reading;
  const record = JSON.parse(await readFile(join(folders.jobsDir, job.id, 'status.json'), 'utf8')) as Job;
  assert.equal(record.status, 'failed');
  assert.equal(record.error, 'the service shut down while the job was running; its checkpoint is in the job folder (run/)');
});
