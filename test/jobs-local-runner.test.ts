// The local runner with a stand-in trainer (helpers/fake-trainer.ts): the command line and folder it gets, the config
// file it reads, its progress and messages, exit codes turned into outcomes, and cancel as SIGTERM then SIGKILL.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test, type TestContext } from 'node:test';
import { repoRoot } from '../src/config/paths.js';
import type { TrainerEvents, TrainerLaunch } from '../src/jobs/job-runner.js';
import type { FinetuneSpec } from '../src/jobs/job-spec.js';
import { LocalRunner, TRAINER_CONFIG_FILE } from '../src/jobs/local-runner.js';
import type { TrainerExported, TrainerProgress } from '../src/jobs/trainer-output.js';

const fakeTrainer = join(repoRoot, 'dist', 'test', 'helpers', 'fake-trainer.js');

const spec: FinetuneSpec = { backbone: 'unet-eps', method: 'pg-sb', guidance: { min: 0.5, max: 4 }, steps: 3, batch_size: 2, seed: 5, name: 'tiny-student' };

async function setup(t: TestContext, mode: string, cancelGraceMs = 5000) {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-local-runner-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const runner = new LocalRunner({
    command: [process.execPath, fakeTrainer],
    modelsDir: join(dir, 'models'),
    baseModelsDir: join(dir, 'base'),
    cancelGraceMs,
    env: { FAKE_TRAINER: mode },
  });
  t.after(() => runner.close());
  const launch: TrainerLaunch = { jobId: 'ft-00000001-abcdef', jobDir: dir, spec, operatorKeys: { threads: 1, eval_n: 2 } };
  const seen = { progress: [] as TrainerProgress[], exported: [] as TrainerExported[], messages: [] as string[] };
  const events: TrainerEvents = {
    progress: (record) => seen.progress.push(record),
    exported: (event) => seen.exported.push(event),
    message: (text) => seen.messages.push(text),
  };
  return { dir, runner, launch, events, seen };
}

test('the trainer runs in the job folder with --config and --out; its progress, export and messages are reported', async (t) => {
  const { dir, runner, launch, events, seen } = await setup(t, 'ok');
  const outcome = await runner.start(launch, events).done;
  assert.deepEqual(outcome, { outcome: 'succeeded' });

  const configPath = join(dir, TRAINER_CONFIG_FILE);
  const out = join(dir, 'models', '.incoming', 'ft-00000001-abcdef', 'tiny-student');
  assert.deepEqual(JSON.parse(await readFile(configPath, 'utf8')), {
    threads: 1,
    eval_n: 2,
    backbone: join(dir, 'base', 'teacher-unet-eps.pt'),
    clip_path: join(dir, 'base', 'clip.pt'),
    vae_path: join(dir, 'base', 'vae.pt'),
    run_dir: join(dir, 'run'),
    method: 'pg-sb',
    guidance: { min: 0.5, max: 4 },
    steps: 3,
    batch_size: 2,
    seed: 5,
    name: 'tiny-student',
  });
  assert.deepEqual(seen.messages, [`fake trainer: ${JSON.stringify({ argv: ['--config', configPath, '--out', out], cwd: dir })}`, 'done']);
  assert.deepEqual(
    seen.progress.map((record) => [record.step, record.total, record.loss_student]),
    [
      [1, 3, 1],
      [2, 3, 0.5],
      [3, 3, 1 / 3],
    ],
  );
  assert.deepEqual(seen.exported, [{ event: 'exported', model_id: 'tiny-student', package: out, student: 'student.pt', steps: 3, metrics: {} }]);
});

test("a failing trainer's exit code and last message become the error", async (t) => {
  const { runner, launch, events } = await setup(t, 'fail');
  assert.deepEqual(await runner.start(launch, events).done, {
    outcome: 'failed',
    error: 'trainer exited with code 2: config error: lora_rank must be in [1, 1024], got 0',
  });
});

test('a program that cannot start fails the run with the reason', async (t) => {
  const { dir, launch, events } = await setup(t, 'ok');
  const runner = new LocalRunner({ command: [join(dir, 'no-such-python')], modelsDir: dir, baseModelsDir: dir, cancelGraceMs: 100 });
  const outcome = await runner.start(launch, events).done;
  assert.deepEqual(outcome, { outcome: 'failed', error: `cannot start the trainer: spawn ${join(dir, 'no-such-python')} ENOENT` });
});

test('cancel sends SIGTERM and waits for the trainer to stop', async (t) => {
  const { runner, launch, events, seen } = await setup(t, 'slow');
  const run = runner.start(launch, events);
  while (seen.progress.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
  await run.cancel();
  assert.deepEqual(await run.done, { outcome: 'cancelled' });
  assert.equal(seen.messages.at(-1), 'SIGTERM: checkpoint saved');
});

test('a trainer that ignores SIGTERM is killed once the grace period is over', async (t) => {
  const graceMs = 300;
  const { runner, launch, events, seen } = await setup(t, 'stubborn', graceMs);
  const run = runner.start(launch, events);
  while (seen.progress.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  const startedAt = performance.now();
  await run.cancel();
  const waitedMs = performance.now() - startedAt;
  assert.deepEqual(await run.done, { outcome: 'cancelled' });
  assert.ok(waitedMs >= graceMs && waitedMs < graceMs + 2000, `stopped after ${waitedMs} ms`);
  assert.equal(seen.messages.at(-1), 'ignoring SIGTERM');
});

test('close stops the running trainers; their runs fail with the reason', async (t) => {
  const { runner, launch, events, seen } = await setup(t, 'slow');
  const run = runner.start(launch, events);
  while (seen.progress.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  await runner.close();
  assert.deepEqual(await run.done, {
    outcome: 'failed',
    error: 'the service shut down while the job was running; its checkpoint is in the job folder (run/)',
  });
});
