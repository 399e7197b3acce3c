// The kubernetes runner against a small fake of the Kubernetes API on a real socket (helpers/fake-kubernetes.ts; no
// cluster runs here): the Job it creates (also checked offline against the Kubernetes schema with kubernetes-models),
// progress from the pod log, success, failure, a refused create, a log stream cut short, cancel and reattach.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Job as JobModel } from 'kubernetes-models/batch/v1/Job';
import { repoRoot } from '../src/config/paths.js';
import { resolveSettings } from '../src/config/settings.js';
import { createJobManager } from '../src/jobs/create-job-manager.js';
import type { TrainerEvents, TrainerLaunch, TrainerOutcome } from '../src/jobs/job-runner.js';
import { KubernetesRunner, loadJobTemplate, renderJob, resolveNamespace } from '../src/jobs/kubernetes-runner.js';
import type { TrainerProgress } from '../src/jobs/trainer-output.js';
import { FakeKubernetes } from './helpers/fake-kubernetes.js';

const templatePath = join(repoRoot, 'k8s', 'base', 'trainer-job-template.yaml');
const jobId = 'ft-mi9x2k4c-3f9a1b';
const jobName = `snoopi-${jobId}`;

const launch: TrainerLaunch = {
  jobId,
  jobDir: '/srv/jobs/ft-mi9x2k4c-3f9a1b',
  spec: { backbone: 'dit', method: 'sb', guidance: { fixed: 4.5 }, steps: 200, batch_size: 16, seed: 3, name: 'dit-sb' },
  operatorKeys: { device: 'cuda', eval_n: 128 },
};

const progressLine = (step: number, total = 200) => JSON.stringify({ step, total, eta_s: total - step, loss_student: 0.1, loss_lora: 1, kappa: 4.5 });

async function setup(t: TestContext) {
  const api = new FakeKubernetes();
  await api.start();
  t.after(() => api.stop());
  const runner = new KubernetesRunner({ kubeConfig: api.kubeConfig(), namespace: 'snoopi', template: await loadJobTemplate(templatePath), pollMs: 20 });
  t.after(() => runner.close());
  const seen = { progress: [] as TrainerProgress[], messages: [] as string[], exported: [] as string[] };
  const events: TrainerEvents = {
    progress: (record) => seen.progress.push(record),
    exported: (event) => seen.exported.push(event.model_id),
    message: (text) => seen.messages.push(text),
  };
  return { api, runner, events, seen };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test("the rendered Job is the template with the job's name, labels and trainer arguments, and valid for Kubernetes", async () => {
  const template = await loadJobTemplate(templatePath);
  const job = renderJob(template, launch);
  new JobModel(job as ConstructorParameters<typeof JobModel>[0]).validate();

  assert.equal(job.metadata!.name, jobName);
  assert.deepEqual(job.metadata!.labels, { ...template.metadata!.labels, 'app.kubernetes.io/name': 'snoopi-trainer', 'snoopi.dev/job-id': jobId });
  assert.deepEqual(job.metadata!.annotations, { 'snoopi.dev/model-id': 'dit-sb' });
  assert.equal(job.spec!.template.metadata!.labels!['snoopi.dev/job-id'], jobId);
  const container = job.spec!.template.spec!.containers.find((candidate) => candidate.name === 'trainer')!;
  const templateArgs = template.spec!.template.spec!.containers.find((candidate) => candidate.name === 'trainer')!.args ?? [];
  assert.deepEqual(container.args, [
    ...templateArgs,
    '--out',
    `models/.incoming/${jobId}/dit-sb`,
    '--device=cuda',
    '--eval_n=128',
    '--backbone=dit',
    '--method=sb',
    '--guidance={"fixed":4.5}',
    '--steps=200',
    '--batch_size=16',
    '--seed=3',
    '--name=dit-sb',
  ]);
  // The template itself is untouched.
  assert.equal(template.metadata!.name, 'snoopi-trainer');
  assert.throws(() => renderJob({ ...template, kind: 'Pod' }, launch), /the Job template must be one batch\/v1 Job/);
});

test('the namespace: the setting, else the kubeconfig context', async () => {
  const api = new FakeKubernetes();
  assert.equal(resolveNamespace(api.kubeConfig('team-a'), undefined), 'team-a');
  assert.equal(resolveNamespace(api.kubeConfig('team-a'), 'ops'), 'ops');
});

test('a Job is created, the log of its rank-0 pod gives progress and messages, and it succeeds', async (t) => {
  const { api, runner, events, seen } = await setup(t);
  const run = runner.start(launch, events);
  await until(() => api.jobs.has(jobName), 'the Job exists');
  assert.deepEqual(api.jobs.get(jobName)!.spec, renderJob(await loadJobTemplate(templatePath), launch).spec);
  const pod = api.addPod(jobId, `${jobName}-0-abcde`, 'Running', 0);
  // Another rank's pod, newer: only rank 0 prints progress, so the runner does not follow it.
  api.print(api.addPod(jobId, `${jobName}-1-fghij`, 'Running', 1), 'rank 1 has nothing to say');
  api.print(pod, 'distilling models/base/teacher-dit.pt', progressLine(10), progressLine(20));
  await until(() => seen.progress.length === 2, 'two progress lines');
  api.print(pod, progressLine(200), JSON.stringify({ event: 'exported', model_id: 'dit-sb', package: 'models/.incoming/x/dit-sb', steps: 200, metrics: {} }));
  api.endPod(pod, 'Succeeded');
  api.endJob(jobName, { type: 'Complete', status: 'True' });
  assert.deepEqual(await run.done, { outcome: 'succeeded' });
  assert.deepEqual(
    seen.progress.map((record) => record.step),
    [10, 20, 200],
  );
  assert.deepEqual(seen.messages, ['distilling models/base/teacher-dit.pt']);
  assert.deepEqual(seen.exported, ['dit-sb']);
  assert.deepEqual([...api.authorizations], ['Bearer service-account-token']);
  const calls = new Set(api.requests.map((request) => request.replace(/\?.*/, '').replace(jobName, 'NAME').replace(/pods\/[^/]+\/log/, 'pods/POD/log')));
  assert.deepEqual([...calls].sort(), [
    'GET /api/v1/namespaces/snoopi/pods',
    'GET /api/v1/namespaces/snoopi/pods/POD/log',
    'GET /apis/batch/v1/namespaces/snoopi/jobs/NAME/status',
    'POST /apis/batch/v1/namespaces/snoopi/jobs',
  ]);
});

test('a log stream cut short is followed again from the last line, without repeating progress', async (t) => {
  const { api, runner, events, seen } = await setup(t);
  api.cutLogAfter = 2;
  const run = runner.start(launch, events);
  await until(() => api.jobs.has(jobName), 'the Job exists');
  const pod = api.addPod(jobId, `${jobName}-0-abcde`);
  api.print(pod, progressLine(1), progressLine(2), progressLine(3), 'a message');
  await until(() => seen.progress.length === 3 && seen.messages.length === 1, 'every line after the reconnect');
  api.print(pod, progressLine(4));
  api.endPod(pod, 'Succeeded');
  api.endJob(jobName, { type: 'Complete', status: 'True' });
  assert.deepEqual(await run.done, { outcome: 'succeeded' });
  assert.deepEqual(
    seen.progress.map((record) => record.step),
    [1, 2, 3, 4],
  );
  assert.deepEqual(seen.messages, ['a message']);
  assert.ok(api.requests.some((request) => request.includes('/log?') && request.includes('sinceTime=')), 'the reconnect asks for the lines since the last one');
});

test("a failed Job fails the run with the Job's reason and the trainer's last message", async (t) => {
  const { api, runner, events } = await setup(t);
  const run = runner.start(launch, events);
  await until(() => api.jobs.has(jobName), 'the Job exists');
  const pod = api.addPod(jobId, `${jobName}-0-abcde`);
  api.print(pod, progressLine(1), 'distill failed: loss_student is nan at step 2: stopping');
  api.endPod(pod, 'Failed');
  api.endJob(jobName, { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' });
  assert.deepEqual(await run.done, {
    outcome: 'failed',
    error: `Kubernetes Job ${jobName} failed (BackoffLimitExceeded: Job has reached the specified backoff limit): distill failed: loss_student is nan at step 2: stopping`,
  });
});

test('a refused create fails the run with the API answer', async (t) => {
  const { api, runner, events } = await setup(t);
  api.refuseCreate = { status: 403, message: 'jobs.batch is forbidden: User "system:serviceaccount:snoopi:default" cannot create resource "jobs"' };
  assert.deepEqual(await runner.start(launch, events).done, {
    outcome: 'failed',
    error: `cannot create the Kubernetes Job ${jobName}: HTTP 403: jobs.batch is forbidden: User "system:serviceaccount:snoopi:default" cannot create resource "jobs"`,
  });
});

test('cancel deletes the Job with its pods; a Job deleted by someone else fails the run', async (t) => {
  const { api, runner, events, seen } = await setup(t);
  const run = runner.start(launch, events);
  await until(() => api.jobs.has(jobName), 'the Job exists');
  const pod = api.addPod(jobId, `${jobName}-0-abcde`);
  api.print(pod, progressLine(1));
  await until(() => seen.progress.length === 1, 'progress');
  await run.cancel();
  assert.deepEqual(await run.done, { outcome: 'cancelled' });
  assert.equal(api.jobs.has(jobName), false);
  assert.ok(api.requests.includes(`DELETE /apis/batch/v1/namespaces/snoopi/jobs/${jobName}?propagationPolicy=Background`), api.requests.join('\n'));

  const other = runner.start({ ...launch, jobId: 'ft-mi9x2k4c-000000' }, events);
  await until(() => api.jobs.has('snoopi-ft-mi9x2k4c-000000'), 'the second Job exists');
  api.jobs.delete('snoopi-ft-mi9x2k4c-000000');
  assert.deepEqual(await other.done, { outcome: 'failed', error: 'the Kubernetes Job snoopi-ft-mi9x2k4c-000000 is gone (deleted outside the service)' });
});

test('reattach follows an existing Job without creating one; close detaches, leaving it running', async (t) => {
  const { api, runner, events, seen } = await setup(t);
  const first = runner.start(launch, events);
  await until(() => api.jobs.has(jobName), 'the Job exists');
  await runner.close();
  assert.deepEqual(await first.done, { outcome: 'detached' } satisfies TrainerOutcome);
  assert.equal(api.jobs.has(jobName), true);

  const creates = api.requests.filter((request) => request.startsWith('POST')).length;
  const again = runner.reattach(launch, events);
  const pod = api.addPod(jobId, `${jobName}-0-abcde`, 'Succeeded');
  api.print(pod, progressLine(200));
  api.endJob(jobName, { type: 'Complete', status: 'True' });
  assert.deepEqual(await again.done, { outcome: 'succeeded' });
  assert.deepEqual(
    seen.progress.map((record) => record.step),
    [200],
  );
  assert.equal(api.requests.filter((request) => request.startsWith('POST')).length, creates);
});

test('the service builds its kubernetes runner from the settings and KUBECONFIG; a job goes through to a registered package', async (t) => {
  const api = new FakeKubernetes();
  await api.start();
  t.after(() => api.stop());
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-k8s-'));
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
  const modelsDir = join(dir, 'models');
  await cp(join(repoRoot, 'models', 'shapes-fixture'), join(modelsDir, 'shapes-fixture'), { recursive: true });
  await mkdir(join(modelsDir, 'base'));
  await writeFile(join(modelsDir, 'base', 'teacher-dit.pt'), 'a checkpoint');
  await writeFile(join(dir, 'kubeconfig'), api.kubeConfig('team-a').exportConfig());
  const previous = process.env.KUBECONFIG;
  process.env.KUBECONFIG = join(dir, 'kubeconfig');
  t.after(() => (previous === undefined ? delete process.env.KUBECONFIG : (process.env.KUBECONFIG = previous)));

  const settings = resolveSettings({ adminToken: 'a-token-of-16-chars', modelsDir, jobsDir: join(dir, 'jobs'), jobRunner: 'kubernetes', k8sPollMs: 100, logLevel: 'silent' });
  let rescans = 0;
  const manager = await createJobManager(settings, {
    rescan: async () => void rescans++,
    modelIds: () => ['shapes-fixture'],
    log: { info: () => {}, warn: () => {}, error: () => {} },
  });
  t.after(() => manager.close());
  const job = await manager.submit({ backbone: 'dit', method: 'pg-sb', steps: 2, batch_size: 2, seed: 0, name: 'dit-in-cluster' });
  const name = `snoopi-${job.id}`;
  await until(() => api.jobs.has(name), 'the Job exists');
  assert.ok(api.requests.includes('POST /apis/batch/v1/namespaces/team-a/jobs'));

  // The trainer pod exports its package to the staging folder of the shared models volume.
  const staged = join(modelsDir, '.incoming', job.id, 'dit-in-cluster');
  await cp(join(repoRoot, 'models', 'shapes-fixture'), staged, { recursive: true });
  const manifest = JSON.parse(await readFile(join(staged, 'model.json'), 'utf8'));
  await writeFile(join(staged, 'model.json'), JSON.stringify({ ...manifest, id: 'dit-in-cluster', method: 'pg-sb' }));
  const pod = api.addPod(job.id, `${name}-0-xyz`);
  api.print(pod, progressLine(1, 2), progressLine(2, 2));
  api.endPod(pod, 'Succeeded');
  api.endJob(name, { type: 'Complete', status: 'True' });
  await until(() => manager.get(job.id)!.status === 'succeeded' || manager.get(job.id)!.status === 'failed', 'the job ends');

  const done = manager.get(job.id)!;
  assert.equal(done.error, null);
  assert.deepEqual([done.status, done.runner, done.model_id, done.progress], ['succeeded', 'kubernetes', 'dit-in-cluster', { step: 2, total: 2, eta_s: 0 }]);
  assert.equal(JSON.parse(await readFile(join(modelsDir, 'dit-in-cluster', 'model.json'), 'utf8')).id, 'dit-in-cluster');
  assert.equal(rescans, 1);
});
