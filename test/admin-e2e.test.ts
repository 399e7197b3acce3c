// End to end with the real trainer (python -m trainer.distill) on tiny random checkpoints, over real sockets:
// finetune -> progress (server-sent events and `snoopi jobs watch`) -> package checked and registered -> activated
// under continuous load with no failed request -> /generate answers with the new model; the records survive a
// restart. Then a cancel mid-run (the trainer saves its checkpoint) and a trainer failure with its error text.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../src/config/paths.js';
import type { Job } from '../src/jobs/job-record.js';
import { readServerSentEvents } from '../src/jobs/server-sent-events.js';
import { FIXTURE_MODEL, TOKEN, adminFolders, auth, type AdminFolders } from './helpers/admin.js';
import { build } from './helpers/build.js';
import { writeTinyBaseModels } from './helpers/tiny-base-models.js';

// What differs from the trainer's defaults for a run of seconds: one thread, no evaluation but the final tiny one.
const OPERATOR_KEYS = { threads: 1, eval_every: 0, eval_n: 2, log_every: 1 };

async function tinyTrainerFolders(t: TestContext): Promise<AdminFolders & { trainerConfig: string }> {
  const folders = await adminFolders(t);
  await writeTinyBaseModels(folders.baseModelsDir);
  const trainerConfig = join(folders.dir, 'trainer.json');
  await writeFile(trainerConfig, JSON.stringify(OPERATOR_KEYS));
  return { ...folders, trainerConfig, settings: { ...folders.settings, trainerConfig } };
}

async function post(url: string, path: string, payload?: object, headers: Record<string, string> = {}) {
  const response = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { ...headers, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(payload === undefined ? {} : { body: JSON.stringify(payload) }),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as any };
}

async function getJson(url: string, path: string): Promise<any> {
  return (await fetch(`${url}${path}`, { headers: auth })).json();
}

/** Every event of a job's stream until it ends; `onEvent` may act on them as they come. */
async function followEvents(url: string, id: string, onEvent: (job: Job) => Promise<void> | void = () => {}): Promise<Job[]> {
  const response = await fetch(`${url}/admin/jobs/${id}/events`, { headers: auth });
  const events: Job[] = [];
  for await (const event of readServerSentEvents(response.body!)) {
    const job = JSON.parse(event.data) as Job;
    events.push(job);
    await onEvent(job);
  }
  return events;
}

test('finetune -> progress -> registered -> activated under load without a failed request -> generated', async (t) => {
  const folders = await tinyTrainerFolders(t);
  const { app, url } = await build(t, { settings: folders.settings, listen: true });

  const created = await post(url, '/admin/finetune', { backbone: 'unet-eps', steps: 3, batch_size: 2, seed: 1, name: 'tiny-pgsb' }, auth);
  assert.equal(created.status, 202);
  const id = (created.body.job as Job).id;
  assert.equal(created.headers.get('location'), `/admin/jobs/${id}`);

  const cli = promisify(execFile)(process.execPath, [join(repoRoot, 'dist', 'src', 'cli.js'), 'jobs', 'watch', id, `--url=${url}`], {
    env: { ...process.env, SNOOPI_ADMIN_TOKEN: TOKEN },
  });
  const events = await followEvents(url, id);

  // 1. Progress, then the package checks, then success.
  const final = events.at(-1)!;
  assert.equal(final.status, 'succeeded', final.error ?? '');
  assert.equal(final.model_id, 'tiny-pgsb');
  assert.deepEqual(final.progress, { step: 3, total: 3, eta_s: 0 });
  assert.deepEqual(Object.keys(final.losses).sort(), ['lora', 'student']);
  assert.equal(typeof final.kappa, 'number');
  assert.ok(final.kappa! >= 0.5 && final.kappa! <= 4, `PG-SB's default U(0.5, 4) for unet-eps: ${final.kappa}`);
  assert.deepEqual(Object.keys(final.metrics).sort(), ['align', 'fid']);
  const steps = [...new Set(events.map((event) => event.progress.step))];
  assert.deepEqual(steps, [0, 1, 2, 3]);
  const stages = events.map((event) => event.stage).filter((stage, index, all) => stage !== all[index - 1]);
  assert.deepEqual(stages, ['training', 'validating', 'registering', null]);

  // 2. `snoopi jobs watch` drew the progress and says how it ended.
  const watched = await cli;
  assert.match(watched.stdout, new RegExp(`^${id}  running  \\[#{6}-{14}\\]  1/3   33%`, 'm'));
  assert.match(watched.stdout, new RegExp(`^${id}  succeeded  \\[#{20}\\]  3/3  100%`, 'm'));
  assert.match(watched.stdout, /^succeeded: model tiny-pgsb is registered/m);

  // 3. The records on disk, the package in the registry and nothing left in the staging folder.
  const jobDir = join(folders.jobsDir, id);
  assert.deepEqual(JSON.parse(await readFile(join(jobDir, 'status.json'), 'utf8')), final);
  const progress = (await readFile(join(jobDir, 'progress.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line).step);
  assert.deepEqual(progress, [1, 2, 3]);
  assert.match(await readFile(join(jobDir, 'trainer.log'), 'utf8'), /^distilling .*teacher-unet-eps\.pt \(unet-eps/m);
  assert.deepEqual(await readdir(join(folders.modelsDir, '.incoming')), []);
  const models = (await getJson(url, '/models')).data as { id: string; method: string; active: boolean; loaded: boolean }[];
  assert.deepEqual(
    models.map((model) => [model.id, model.method, model.active]),
    [
      [FIXTURE_MODEL, 'teacher-init', true],
      ['tiny-pgsb', 'pg-sb', false],
    ],
  );

  // 4. Activate under continuous load: every request answers 200, the new model takes over, the old one is released.
  const answers: { status: number; model: string; at: number }[] = [];
  let activatedAt = Infinity;
  let stop = false;
  const client = async (worker: number) => {
    for (let i = 0; !stop; i++) {
      const answer = await post(url, '/generate', { prompt: 'a red circle on a white background', seed: worker * 1000 + i });
      answers.push({ status: answer.status, model: answer.body.model ?? answer.body.code, at: performance.now() });
    }
  };
  const clients = [0, 1, 2, 3].map(client);
  while (answers.length < 20) await new Promise((resolve) => setTimeout(resolve, 5));
  const activation = await post(url, '/admin/models/tiny-pgsb/activate', undefined, auth);
  activatedAt = performance.now();
  assert.deepEqual(activation.body, { active: 'tiny-pgsb', previous: FIXTURE_MODEL });
  while (answers.filter((answer) => answer.at > activatedAt).length < 20) await new Promise((resolve) => setTimeout(resolve, 5));
  stop = true;
  await Promise.all(clients);
  assert.deepEqual(answers.filter((answer) => answer.status !== 200), []);
  assert.ok(answers.some((answer) => answer.model === FIXTURE_MODEL));
  const afterSwitch = answers.filter((answer) => answer.at > activatedAt + 1000);
  assert.ok(afterSwitch.length === 0 || afterSwitch.every((answer) => answer.model === 'tiny-pgsb'));
  assert.equal(answers.at(-1)!.model, 'tiny-pgsb');
  const deadline = Date.now() + 10_000;
  let loaded: Record<string, boolean> = {};
  do {
    loaded = Object.fromEntries(((await getJson(url, '/models')).data as { id: string; loaded: boolean }[]).map((model) => [model.id, model.loaded]));
  } while (loaded[FIXTURE_MODEL] && Date.now() < deadline && (await new Promise((resolve) => setTimeout(resolve, 20)), true));
  assert.deepEqual(loaded, { [FIXTURE_MODEL]: false, 'tiny-pgsb': true }, 'the retired model released its sessions once idle');

  // 5. /generate answers with the new model by default, and any registered model by id.
  const generated = await post(url, '/generate', { prompt: 'a blue square', seed: 3 });
  assert.equal(generated.body.model, 'tiny-pgsb');
  assert.equal(generated.body.images.length, 1);
  const byId = await post(url, '/generate', { prompt: 'a blue square', seed: 3, model: FIXTURE_MODEL });
  assert.equal(byId.body.model, FIXTURE_MODEL);
  assert.match(await (await fetch(`${url}/metrics`)).text(), /^snoopi_jobs\{status="succeeded"\} 1$/m);

  // 6. A restart lists the job again, exactly as it was; the package is still registered.
  await app.lifecycle.shutdown('restart');
  const restarted = await build(t, { settings: folders.settings, listen: true });
  assert.deepEqual(await getJson(restarted.url, '/admin/jobs'), { data: [final] });
  const listed = await promisify(execFile)(process.execPath, [join(repoRoot, 'dist', 'src', 'cli.js'), 'jobs', 'list', `--url=${restarted.url}`], {
    env: { ...process.env, SNOOPI_ADMIN_TOKEN: TOKEN },
  });
  assert.match(listed.stdout, new RegExp(`^${id}  succeeded  3/3 +unet-eps +tiny-pgsb  \\d+s ago$`, 'm'));
  assert.ok(((await getJson(restarted.url, '/models')).data as { id: string }[]).some((model) => model.id === 'tiny-pgsb'));
});

test('cancel mid-run stops the trainer (its checkpoint saved); a failing trainer surfaces its error text', async (t) => {
  const folders = await tinyTrainerFolders(t);
  const { url } = await build(t, { settings: folders.settings, listen: true });

  const created = await post(url, '/admin/finetune', { backbone: 'unet-eps', method: 'sb', guidance: { fixed: 4.5 }, steps: 2000, batch_size: 2, name: 'tiny-cancelled' }, auth);
  const id = (created.body.job as Job).id;
  let cancelAnswer: Job | undefined;
  const events = await followEvents(url, id, async (job) => {
    if (cancelAnswer === undefined && job.progress.step >= 2) {
      const response = await fetch(`${url}/admin/jobs/${id}`, { method: 'DELETE', headers: auth });
      assert.equal(response.status, 200);
      cancelAnswer = ((await response.json()) as { job: Job }).job;
    }
  });
  const final = events.at(-1)!;
  assert.equal(final.status, 'cancelled');
  assert.deepEqual(cancelAnswer, final);
  assert.equal(final.kappa, 4.5);
  assert.ok(final.progress.step >= 2 && final.progress.step < 2000);
  const jobDir = join(folders.jobsDir, id);
  assert.ok((await stat(join(jobDir, 'run', 'ckpt.pt'))).size > 0, 'the trainer saved its resumable checkpoint on SIGTERM');
  assert.match(await readFile(join(jobDir, 'trainer.log'), 'utf8'), /^stopped by SIGTERM at step \d+; checkpoint saved/m);
  await assert.rejects(stat(join(folders.modelsDir, '.incoming', id)), { code: 'ENOENT' });

  // A teacher file the trainer cannot read: the job is accepted (the file exists) and the trainer refuses it.
  await writeFile(join(folders.baseModelsDir, 'teacher-broken.pt'), 'not a checkpoint');
  const broken = await post(url, '/admin/finetune', { backbone: 'broken', steps: 3, batch_size: 2, name: 'tiny-broken' }, auth);
  assert.equal(broken.status, 202);
  const failed = (await followEvents(url, (broken.body.job as Job).id)).at(-1)!;
  assert.equal(failed.status, 'failed');
  assert.match(failed.error!, /^trainer exited with code 2: config error: cannot read the teacher checkpoint .*teacher-broken\.pt: /);
  const models = (await getJson(url, '/models')).data as { id: string }[];
  assert.deepEqual(
    models.map((model) => model.id),
    [FIXTURE_MODEL],
  );
});
