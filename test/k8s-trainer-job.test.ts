// The trainer Job template (k8s/base/trainer-job-template.yaml), loaded and filled in by the service's own kubernetes
// runner (src/jobs/kubernetes-runner.ts) as it would be for a POST /admin/finetune, then checked: a valid batch/v1 Job
// with no unknown field; Indexed pods that run torchrun together through the headless rendezvous Service; the runner's
// arguments reaching trainer.distill; the models volume where the runner's paths and the trainer image expect it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { repoRoot } from '../src/config/paths.js';
import { newJobId } from '../src/jobs/job-record.js';
import type { TrainerLaunch } from '../src/jobs/job-runner.js';
import { JOB_ID_LABEL, TRAINER_CONTAINER, loadJobTemplate, renderJob, trainerArguments } from '../src/jobs/kubernetes-runner.js';
import { finalImage, parseDockerfile } from './helpers/dockerfile-image.js';
import { podSecurityProblems, unknownFields, validateManifest, type Manifest } from './helpers/k8s-schema.js';

const templatePath = join(repoRoot, 'k8s', 'base', 'trainer-job-template.yaml');
const base = (file: string): Manifest => parse(readFileSync(join(repoRoot, 'k8s', 'base', file), 'utf8')) as Manifest;

const launch: TrainerLaunch = {
  jobId: newJobId(),
  jobDir: '/unused/by/the/kubernetes/runner',
  spec: { backbone: 'unet-eps', method: 'pg-sb', guidance: { min: 0.5, max: 4 }, steps: 2000, batch_size: 32, seed: 7, name: 'shapes-pgsb-test' },
  operatorKeys: {},
};

async function renderedJob(): Promise<Manifest> {
  // Through JSON, as the API client sends it.
  return JSON.parse(JSON.stringify(renderJob(await loadJobTemplate(templatePath), launch))) as Manifest;
}

const envValue = (container: Manifest, name: string): string => container.env.find((variable: Manifest) => variable.name === name).value;

test('the runner loads the template and renders a valid batch/v1 Job with no unknown field', async () => {
  const job = await renderedJob();
  validateManifest(job);
  assert.deepEqual(unknownFields(job), []);
  assert.equal(job.metadata.name, `snoopi-${launch.jobId}`);
  assert.equal(job.metadata.labels[JOB_ID_LABEL], launch.jobId);
  assert.equal(job.spec.template.metadata.labels[JOB_ID_LABEL], launch.jobId);
  // Each pod's hostname is <job name>-<index>: a DNS label of at most 63 characters.
  const nodes = job.spec.completions as number;
  assert.match(`${job.metadata.name}-${nodes - 1}`, /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
  assert.deepEqual(podSecurityProblems(job.spec.template.spec), []);
});

test('Indexed pods run torchrun together: nodes, ranks and the rendezvous Service agree', async () => {
  const job = await renderedJob();
  const pod = job.spec.template.spec;
  const trainer = pod.containers.find((container: Manifest) => container.name === TRAINER_CONTAINER);
  assert.equal(job.spec.completionMode, 'Indexed');
  assert.equal(job.spec.parallelism, job.spec.completions, 'every rank runs at once');
  assert.equal(Number(envValue(trainer, 'NNODES')), job.spec.completions, 'NNODES = completions');
  assert.equal(Number(envValue(trainer, 'NPROC_PER_NODE')), Number(trainer.resources.limits['nvidia.com/gpu']), 'one process per GPU');
  assert.equal(pod.restartPolicy, 'Never');
  assert.equal(job.spec.backoffLimit, 0);

  assert.deepEqual(trainer.command, ['torchrun']);
  const torchrunArgs = trainer.args.slice(0, trainer.args.indexOf('-m'));
  assert.deepEqual(torchrunArgs, [
    '--nnodes=$(NNODES)',
    '--nproc_per_node=$(NPROC_PER_NODE)',
    '--node_rank=$(JOB_COMPLETION_INDEX)',
    '--rdzv_backend=static',
    '--rdzv_endpoint=$(JOB_NAME)-0.snoopi-trainer:29500',
    '--rdzv_id=$(JOB_NAME)',
  ]);
  // Every $(VAR) is one the container defines (Kubernetes leaves an undefined one as it is).
  const defined = new Set(trainer.env.map((variable: Manifest) => variable.name));
  for (const argument of trainer.args as string[]) {
    for (const match of argument.matchAll(/\$\((\w+)\)/g)) assert.ok(defined.has(match[1]), `${argument}: $(${match[1]}) is not defined`);
  }
  const fieldPaths = Object.fromEntries(
    trainer.env.filter((variable: Manifest) => variable.valueFrom !== undefined).map((variable: Manifest) => [variable.name, variable.valueFrom.fieldRef.fieldPath]),
  );
  assert.deepEqual(fieldPaths, {
    JOB_COMPLETION_INDEX: "metadata.annotations['batch.kubernetes.io/job-completion-index']",
    JOB_NAME: "metadata.labels['batch.kubernetes.io/job-name']",
  });

  // Rank 0's pod is <job name>-0.<subdomain>: the headless Service of that name selects the Job's pods, also before
  // they are ready, on the rendezvous port.
  const service = base('trainer-service.yaml');
  assert.equal(pod.subdomain, service.metadata.name);
  assert.equal(service.spec.clusterIP, 'None');
  assert.equal(service.spec.publishNotReadyAddresses, true);
  for (const [key, value] of Object.entries(service.spec.selector)) assert.equal(job.spec.template.metadata.labels[key], value, key);
  const port = trainer.ports.find((candidate: Manifest) => candidate.name === 'rendezvous').containerPort;
  assert.deepEqual(service.spec.ports, [{ name: 'rendezvous', port, targetPort: port, protocol: 'TCP' }]);
  assert.ok(torchrunArgs.includes(`--rdzv_endpoint=$(JOB_NAME)-0.${service.metadata.name}:${port}`));
  validateManifest(service);
  assert.deepEqual(unknownFields(service), []);
});

test("the runner's arguments reach trainer.distill, and its paths land on the models volume", async () => {
  const job = await renderedJob();
  const pod = job.spec.template.spec;
  const trainer = pod.containers.find((container: Manifest) => container.name === TRAINER_CONTAINER);
  const trainerArgs = trainer.args.slice(trainer.args.indexOf('-m'));
  assert.deepEqual(trainerArgs, ['-m', 'trainer.distill', ...trainerArguments(launch)]);
  const out = trainerArgs[trainerArgs.indexOf('--out') + 1] as string;
  assert.equal(out, `models/.incoming/${launch.jobId}/${launch.spec.name}`);

  // The trainer image's working directory is the repository root; the volume is its models/, where the trainer's
  // defaults (models/base/...) and the runner's --out point, and runs/ (checkpoints) is on the volume too.
  const image = finalImage(parseDockerfile('Dockerfile.trainer'));
  assert.equal(trainer.workingDir, image.workdir);
  assert.deepEqual([pod.securityContext.runAsUser, pod.securityContext.runAsGroup], [image.uid, image.gid]);
  const mounts = Object.fromEntries(trainer.volumeMounts.map((mount: Manifest) => [mount.mountPath, [mount.name, mount.subPath]]));
  assert.deepEqual(mounts, {
    [posix.join(image.workdir, 'models')]: ['models', undefined],
    [posix.join(image.workdir, 'runs')]: ['models', '.runs'],
    '/tmp': ['tmp', undefined],
    '/dev/shm': ['dshm', undefined],
  });
  assert.ok(posix.join(image.workdir, out).startsWith(`${image.workdir}/models/`));
  assert.equal(trainer.securityContext.readOnlyRootFilesystem, true);
  const claim = pod.volumes.find((volume: Manifest) => volume.name === 'models').persistentVolumeClaim.claimName;
  assert.equal(claim, base('models-pvc.yaml').metadata.name);
});
