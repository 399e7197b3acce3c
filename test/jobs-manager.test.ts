// The job manager with a scripted runner and registrar: the queue, the records on disk and what survives a restart,
// progress, success (package checked, then registered), failures, cancel, and the checks of a submitted job.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Job, RunnerKind } from '../src/jobs/job-record.js';
import { JobManager, RESTART_ERROR, type FinetuneRequest } from '../src/jobs/job-manager.js';
import type { JobRunner, TrainerEvents, TrainerLaunch, TrainerOutcome, TrainerRun } from '../src/jobs/job-runner.js';
import { JobStore } from '../src/jobs/job-store.js';
import type { PackageRegistrar } from '../src/jobs/package-registrar.js';

const silent = { info: () => {}, warn: () => {}, error: () => {} };

/** A runner whose trainers the test drives: emit progress, end them, see cancels. */
class ScriptedRunner implements JobRunner {
  readonly runs: ScriptedRun[] = [];
  readonly reattached: string[] = [];

  constructor(readonly kind: RunnerKind = 'local') {}

  start(launch: TrainerLaunch, events: TrainerEvents): TrainerRun {
    const run = new ScriptedRun(launch, events);
    this.runs.push(run);
    return run;
  }

  reattach(launch: TrainerLaunch, events: TrainerEvents): TrainerRun | undefined {
    if (this.kind === 'local') return undefined;
    this.reattached.push(launch.jobId);
    return this.start(launch, events);
  }

  async close(): Promise<void> {
    for (const run of this.runs) run.end({ outcome: this.kind === 'local' ? 'failed' : 'detached', ...(this.kind === 'local' ? { error: 'shut down' } : {}) } as TrainerOutcome);
  }
}

class ScriptedRun implements TrainerRun {
  readonly done: Promise<TrainerOutcome>;
  cancelled = false;
  end!: (outcome: TrainerOutcome) => void;

  constructor(
    readonly launch: TrainerLaunch,
    readonly events: TrainerEvents,
  ) {
    this.done = new Promise((resolve) => {
      this.end = resolve;
    });
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    this.end({ outcome: 'cancelled' });
  }
}

function scriptedRegistrar(failValidation?: string) {
  const calls: string[] = [];
  const registrar: PackageRegistrar = {
    async validate(dir, id) {
      calls.push(`validate ${dir} ${id}`);
      if (failValidation !== undefined) throw new Error(failValidation);
    },
    async install(dir, id) {
      calls.push(`install ${dir} ${id}`);
    },
  };
  return { registrar, calls };
}

interface Setup {
  dir: string;
  jobsDir: string;
  modelsDir: string;
  baseDir: string;
}

async function folders(t: TestContext): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-jobs-'));
  // Retried: a manager closed after this hook may still be writing its records.
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
  const baseDir = join(dir, 'models', 'base');
  await mkdir(baseDir, { recursive: true });
  for (const backbone of ['unet-eps', 'dit']) await writeFile(join(baseDir, `teacher-${backbone}.pt`), 'checkpoint');
  return { dir, jobsDir: join(dir, 'jobs'), modelsDir: join(dir, 'models'), baseDir };
}

async function open(setup: Setup, runner: JobRunner, registrar: PackageRegistrar, maxRunning = 1, modelIds: string[] = ['shapes-fixture']) {
  return JobManager.open({
    store: new JobStore(setup.jobsDir, silent),
    runner,
    registrar,
    modelsDir: setup.modelsDir,
    baseModelsDir: setup.baseDir,
    maxRunning,
    operatorKeys: { threads: 1 },
    modelIds: () => modelIds,
    log: silent,
  });
}

const request = (name: string, extra: Partial<FinetuneRequest> = {}): FinetuneRequest => ({
  backbone: 'unet-eps',
  method: 'pg-sb',
  steps: 10,
  batch_size: 2,
  seed: 0,
  name,
  ...extra,
});

async function onDisk(setup: Setup, id: string): Promise<Job> {
  return JSON.parse(await readFile(join(setup.jobsDir, id, 'status.json'), 'utf8')) as Job;
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

test('one job runs at a time; the next starts when it ends; each change is on disk', async (t) => {
  const setup = await folders(t);
  const runner = new ScriptedRunner();
  const { registrar } = scriptedRegistrar();
  const manager = await open(setup, runner, registrar);
  t.after(() => manager.close());

  const first = await manager.submit(request('first'));
  const second = await manager.submit(request('second', { method: 'sb', guidance: { fixed: 4.5 } }));
  assert.equal(manager.get(first.id)!.status, 'running');
  assert.equal(manager.get(second.id)!.status, 'queued');
  assert.equal(runner.runs.length, 1);
  assert.deepEqual(runner.runs[0]!.launch, { jobId: first.id, jobDir: join(setup.jobsDir, first.id), spec: first.spec, operatorKeys: { threads: 1 } });
  assert.deepEqual(manager.counts(), { queued: 1, running: 1, succeeded: 0, failed: 0, cancelled: 0 });
  assert.deepEqual(
    manager.list().map((job) => job.id),
    [second.id, first.id],
  );
  assert.deepEqual(JSON.parse(await readFile(join(setup.jobsDir, second.id, 'spec.json'), 'utf8')), {
    backbone: 'unet-eps',
    method: 'sb',
    steps: 10,
    batch_size: 2,
    seed: 0,
    name: 'second',
    guidance: { fixed: 4.5 },
  });

  runner.runs[0]!.end({ outcome: 'failed', error: 'trainer exited with code 1: distill failed: loss_student is nan' });
  await settle();
  assert.equal(manager.get(first.id)!.status, 'failed');
  assert.equal(manager.get(second.id)!.status, 'running');
  assert.equal(runner.runs.length, 2);
  await manager.close();
  assert.deepEqual(await onDisk(setup, first.id), manager.get(first.id));
  assert.equal((await onDisk(setup, first.id)).error, 'trainer exited with code 1: distill failed: loss_student is nan');
});

test('progress lines update the job and land in progress.jsonl; messages in trainer.log', async (t) => {
  const setup = await folders(t);
  const runner = new ScriptedRunner();
  const manager = await open(setup, runner, scriptedRegistrar().registrar);
  t.after(() => manager.close());
  const job = await manager.submit(request('progress'));
  const seen: Job[] = [];
  manager.subscribe(job.id, (update) => seen.push(update));
  const { events } = runner.runs[0]!;
  const line = { step: 5, total: 10, elapsed_s: 1, eta_s: 1.5, loss_student: 0.25, loss_lora: 1.5, student_grad_norm: 0.1, kappa: 3.5, kappa_lora: 3.5 };
  events.progress(line);
  events.progress({ ...line, step: 10, eta_s: 0, fid: 0.5, align: 0.25 });
  events.message('distilling teacher-unet-eps.pt');
  assert.deepEqual(
    seen.map((update) => [update.progress, update.losses, update.kappa, update.metrics]),
    [
      [{ step: 5, total: 10, eta_s: 1.5 }, { student: 0.25, lora: 1.5 }, 3.5, {}],
      [{ step: 10, total: 10, eta_s: 0 }, { student: 0.25, lora: 1.5 }, 3.5, { fid: 0.5, align: 0.25 }],
    ],
  );
  await manager.close();
  const progress = (await readFile(join(setup.jobsDir, job.id, 'progress.jsonl'), 'utf8')).trim().split('\n').map((text) => JSON.parse(text));
  assert.deepEqual(progress, [line, { ...line, step: 10, eta_s: 0, fid: 0.5, align: 0.25 }]);
  assert.equal(await readFile(join(setup.jobsDir, job.id, 'trainer.log'), 'utf8'), 'distilling teacher-unet-eps.pt\n');
});

test('a trainer that succeeds gets its staged package checked, then registered', async (t) => {
  const setup = await folders(t);
  const runner = new ScriptedRunner();
  const { registrar, calls } = scriptedRegistrar();
  const manager = await open(setup, runner, registrar);
  t.after(() => manager.close());
  const job = await manager.submit(request('good-student'));
  const stages: (string | null)[] = [];
  manager.subscribe(job.id, (update) => stages.push(update.stage));
  runner.runs[0]!.end({ outcome: 'succeeded' });
  await settle();
  const staged = join(setup.modelsDir, '.incoming', job.id, 'good-student');
  assert.deepEqual(calls, [`validate ${staged} good-student`, `install ${staged} good-student`]);
  assert.deepEqual(stages, ['validating', 'registering', null]);
  const done = manager.get(job.id)!;
  assert.equal(done.status, 'succeeded');
  assert.equal(done.model_id, 'good-student');
  assert.equal(done.error, null);
});

test('a package that fails its checks fails the job and is removed', async (t) => {
  const setup = await folders(t);
  const runner = new ScriptedRunner();
  const { registrar, calls } = scriptedRegistrar('Model bad could not be loaded: generator.onnx: sha256 differs');
  const manager = await open(setup, runner, registrar);
  t.after(() => manager.close());
  const job = await manager.submit(request('bad'));
  await mkdir(join(setup.modelsDir, '.incoming', job.id, 'bad'), { recursive: true });
  runner.runs[0]!.end({ outcome: 'succeeded' });
  await settle();
  assert.equal(calls.length, 1);
  const failed = manager.get(job.id)!;
  assert.equal(failed.status, 'failed');
  assert.equal(failed.error, 'the exported package failed its checks: Model bad could not be loaded: generator.onnx: sha256 differs');
  assert.deepEqual(await readdir(join(setup.modelsDir, '.incoming')), []);
});

test('cancel: a queued job at once, a running one through its runner; an ended one is a conflict', async (t) => {
  const setup = await folders(t);
  const runner = new ScriptedRunner();
  const manager = await open(setup, runner, scriptedRegistrar().registrar);
  t.after(() => manager.close());
  const running = await manager.submit(request('running'));
  const queued = await manager.submit(request('queued'));

  const cancelledQueued = await manager.cancel(queued.id);
  assert.equal(cancelledQueued.status, 'cancelled');
  assert.equal(runner.runs.length, 1);

  const cancelledRunning = await manager.cancel(running.id);
  assert.equal(runner.runs[0]!.cancelled, true);
  assert.equal(cancelledRunning.status, 'cancelled');
  assert.equal(cancelledRunning.error, null);
  assert.notEqual(cancelledRunning.finished_at, null);

  await assert.rejects(manager.cancel(running.id), { code: 'SNOOPI_JOB_ENDED', statusCode: 409, message: `Job ${running.id} has already ended (cancelled)` });
  await assert.rejects(manager.cancel('ft-00000000-000000'), { code: 'SNOOPI_JOB_NOT_FOUND', statusCode: 404 });
});

test('after a restart: finished jobs are listed again, queued ones run, a local running one is failed with the reason', async (t) => {
  const setup = await folders(t);
  const first = new ScriptedRunner();
  const before = await open(setup, first, scriptedRegistrar().registrar);
  const finished = await before.submit(request('finished'));
  first.runs[0]!.end({ outcome: 'failed', error: 'trainer exited with code 1: boom' });
  await settle();
  const running = await before.submit(request('running'));
  const queued = await before.submit(request('queued'));
  first.runs[1]!.events.progress({ step: 3, total: 10, eta_s: 7 });
  // The service dies here: no close(), the trainer is gone with it.
  await new JobStore(setup.jobsDir, silent).flush();
  await settle();

  const second = new ScriptedRunner();
  const after = await open(setup, second, scriptedRegistrar().registrar);
  t.after(() => after.close());
  assert.deepEqual(after.get(finished.id), before.get(finished.id));
  const recovered = after.get(running.id)!;
  assert.equal(recovered.status, 'failed');
  assert.equal(recovered.error, RESTART_ERROR);
  assert.deepEqual(recovered.progress, { step: 3, total: 10, eta_s: 7 });
  assert.equal(after.get(queued.id)!.status, 'running');
  assert.deepEqual(
    second.runs.map((run) => run.launch.jobId),
    [queued.id],
  );
  assert.deepEqual(await onDisk(setup, running.id), recovered);
});

test('after a restart a running Kubernetes job is followed again', async (t) => {
  const setup = await folders(t);
  const first = new ScriptedRunner('kubernetes');
  const before = await open(setup, first, scriptedRegistrar().registrar);
  const job = await before.submit(request('in-cluster'));
  await before.close();
  assert.equal((await onDisk(setup, job.id)).status, 'running');

  const second = new ScriptedRunner('kubernetes');
  const { registrar, calls } = scriptedRegistrar();
  const after = await open(setup, second, registrar);
  t.after(() => after.close());
  assert.deepEqual(second.reattached, [job.id]);
  second.runs[0]!.end({ outcome: 'succeeded' });
  await settle();
  assert.equal(after.get(job.id)!.status, 'succeeded');
  assert.equal(calls.length, 2);
});

test('a submitted job is checked: known backbone, guidance that fits the method, a free name', async (t) => {
  const setup = await folders(t);
  const runner = new ScriptedRunner();
  const manager = await open(setup, runner, scriptedRegistrar().registrar);
  t.after(() => manager.close());
  await manager.submit(request('taken-by-a-job'));
  await mkdir(join(setup.modelsDir, 'students'), { recursive: true });
  await writeFile(join(setup.modelsDir, 'notes.txt'), 'not a package');
  const cases: [FinetuneRequest, string, string][] = [
    [
      request('x', { backbone: 'unet-v' }),
      'SNOOPI_UNKNOWN_BACKBONE',
      'No teacher checkpoint for backbone unet-v; known backbones: dit, unet-eps (trainer backbones without a teacher checkpoint yet: unet-v)',
    ],
    [request('x', { guidance: { fixed: 4.5 } }), 'SNOOPI_VALIDATION', 'Invalid request: body/guidance {fixed} is SB\'s fixed kappa; method pg-sb draws kappa from {min, max}'],
    [request('x', { method: 'sb', guidance: { min: 1, max: 2 } }), 'SNOOPI_VALIDATION', "Invalid request: body/guidance {min, max} is PG-SB's random kappa; method sb takes {fixed}"],
    [request('x', { guidance: { min: 3, max: 3 } }), 'SNOOPI_VALIDATION', 'Invalid request: body/guidance/min (3) must be below body/guidance/max (3)'],
    [request('shapes-fixture'), 'SNOOPI_NAME_TAKEN', 'The model id shapes-fixture is taken: a registered model has it'],
    [request('base'), 'SNOOPI_NAME_TAKEN', 'The model id base is taken: the folder of that name holds the base checkpoints'],
    [request('students'), 'SNOOPI_NAME_TAKEN', 'The model id students is taken: the models folder holds a file or folder of that name'],
    [request('notes.txt'), 'SNOOPI_NAME_TAKEN', 'The model id notes.txt is taken: the models folder holds a file or folder of that name'],
  ];
  for (const [bad, code, message] of cases) await assert.rejects(manager.submit(bad), { code, message });
  const runningJob = manager.list()[0]!;
  await assert.rejects(manager.submit(request('taken-by-a-job')), {
    code: 'SNOOPI_NAME_TAKEN',
    message: `The model id taken-by-a-job is taken: job ${runningJob.id} is making it`,
  });
  const unnamed = await manager.submit({ ...request('x'), name: undefined } as FinetuneRequest);
  assert.equal(unnamed.spec.name, `unet-eps-pg-sb-${unnamed.id}`);
  assert.match(unnamed.id, /^ft-[0-9a-z]{8}-[0-9a-f]{6}$/);
});
