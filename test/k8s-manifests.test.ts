// The Kubernetes manifests of k8s/, checked offline: each overlay is rendered (a small kustomize: resources, JSON6902
// patches, images, namespace; compared with `kubectl kustomize` where kubectl is installed), every object is
// validated against the Kubernetes schema (kubernetes-models) and checked for fields Kubernetes does not know
// (@kubernetes/client-node's models), then the wiring: selectors, ports, probes against the app's real routes, the
// settings against the service's own validation, the shutdown budget, RBAC against the job runner's API calls.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { loadSettings, settingSources } from '../src/config/settings.js';
import { repoRoot } from '../src/config/paths.js';
import { build } from './helpers/build.js';
import { finalImage, parseDockerfile } from './helpers/dockerfile-image.js';
import { podSecurityProblems, unknownFields, validateManifest, type Manifest } from './helpers/k8s-schema.js';

const k8sDir = join(repoRoot, 'k8s');
const overlays = ['cpu', 'gpu'] as const;
const image = finalImage(parseDockerfile('Dockerfile'));

/** The service's settings in the container: the image's environment, then the ConfigMap's (envFrom wins). */
const containerSettings = (configMap: Manifest) => loadSettings([], { ...image.env, ...configMap.data });

// --- a small kustomize ---------------------------------------------------------------------------------------------

function loadYaml(path: string): Manifest[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((document) => document.toJS() as Manifest);
}

const supportedKustomizationKeys = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'patches', 'images']);

function pointer(path: string): string[] {
  return path
    .split('/')
    .slice(1)
    .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'));
}

/** RFC 6902 add / replace / remove, the operations the overlays use. */
function applyJsonPatch(target: Manifest, operations: { op: string; path: string; value?: unknown }[]): void {
  for (const { op, path, value } of operations) {
    const parts = pointer(path);
    const last = parts.pop()!;
    let parent: any = target;
    for (const part of parts) {
      parent = parent[part];
      assert.ok(parent !== undefined, `patch path ${path} does not exist`);
    }
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last);
      if (op === 'add') parent.splice(index, 0, value);
      else if (op === 'replace') parent[index] = value;
      else if (op === 'remove') parent.splice(index, 1);
      else assert.fail(`unsupported patch op ${op}`);
    } else if (op === 'add') parent[last] = value;
    else if (op === 'replace') {
      assert.ok(last in parent, `replace of a missing ${path}`);
      parent[last] = value;
    } else if (op === 'remove') delete parent[last];
    else assert.fail(`unsupported patch op ${op}`);
  }
}

function podSpecOf(manifest: Manifest): any {
  return manifest.spec?.template?.spec;
}

function containersOf(manifest: Manifest): any[] {
  const pod = podSpecOf(manifest);
  return pod === undefined ? [] : [...(pod.initContainers ?? []), ...pod.containers];
}

const imageName = (image: string): string => image.replace(/[:@][^/]*$/, '');
const imageTag = (image: string): string | undefined => /:([^/:@]+)$/.exec(image)?.[1];

function kustomize(dir: string): Manifest[] {
  const kustomization = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Manifest;
  for (const key of Object.keys(kustomization)) assert.ok(supportedKustomizationKeys.has(key), `${dir}: kustomization key ${key} is not rendered by this test`);
  const objects: Manifest[] = (kustomization.resources as string[]).flatMap((resource) => {
    const path = join(dir, resource);
    return statSync(path).isDirectory() ? kustomize(path) : loadYaml(path);
  });
  for (const patch of (kustomization.patches ?? []) as { target: { kind: string; name: string }; patch: string }[]) {
    const targets = objects.filter((object) => object.kind === patch.target.kind && object.metadata.name === patch.target.name);
    assert.equal(targets.length, 1, `${dir}: patch target ${patch.target.kind}/${patch.target.name}`);
    applyJsonPatch(targets[0]!, parse(patch.patch));
  }
  for (const image of (kustomization.images ?? []) as { name: string; newName?: string; newTag?: string }[]) {
    for (const container of objects.flatMap(containersOf)) {
      if (imageName(container.image) !== image.name) continue;
      const tag = image.newTag ?? imageTag(container.image);
      container.image = `${image.newName ?? image.name}${tag === undefined ? '' : `:${tag}`}`;
    }
  }
  if (kustomization.namespace !== undefined) {
    for (const object of objects) if (object.kind !== 'Namespace') object.metadata.namespace = kustomization.namespace;
  }
  return objects;
}

const byKey = (objects: Manifest[]): Map<string, Manifest> => new Map(objects.map((object) => [`${object.kind}/${object.metadata.name}`, object]));

function only(objects: Manifest[], kind: string, name?: string): Manifest {
  const found = objects.filter((object) => object.kind === kind && (name === undefined || object.metadata.name === name));
  assert.equal(found.length, 1, `exactly one ${kind}${name === undefined ? '' : `/${name}`}`);
  return found[0]!;
}

const rendered = Object.fromEntries(overlays.map((overlay) => [overlay, kustomize(join(k8sDir, 'overlays', overlay))])) as Record<
  (typeof overlays)[number],
  Manifest[]
>;

function kubectlKustomize(dir: string): Manifest[] | undefined {
  try {
    return parseAllDocuments(execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })).map(
      (document) => document.toJS() as Manifest,
    );
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

// --- schema ----------------------------------------------------------------------------------------------------------

for (const overlay of overlays) {
  test(`overlays/${overlay}: every object is valid against the Kubernetes schema and has no unknown field`, () => {
    const objects = rendered[overlay];
    assert.deepEqual(
      objects.map((object) => `${object.kind}/${object.metadata.name}`).sort(),
      [
        'ConfigMap/snoopi-serve-config',
        'Deployment/snoopi-serve',
        'HorizontalPodAutoscaler/snoopi-serve',
        'Namespace/snoopi',
        'PersistentVolumeClaim/snoopi-models',
        'PodDisruptionBudget/snoopi-serve',
        'Role/snoopi-job-runner',
        'RoleBinding/snoopi-job-runner',
        'Service/snoopi-serve',
        'Service/snoopi-trainer',
        'ServiceAccount/snoopi-serve',
      ],
    );
    for (const object of objects) {
      validateManifest(object);
      assert.deepEqual(unknownFields(object), [], `${object.kind}/${object.metadata.name}`);
      if (object.kind !== 'Namespace') assert.equal(object.metadata.namespace, 'snoopi');
    }
  });

  test(`overlays/${overlay}: the test's rendering equals kubectl kustomize (where kubectl is installed)`, (t) => {
    const reference = kubectlKustomize(join(k8sDir, 'overlays', overlay));
    if (reference === undefined) return t.skip('kubectl is not installed');
    const ours = byKey(rendered[overlay]);
    const theirs = byKey(reference);
    assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
    for (const [key, object] of ours) assert.deepEqual(object, theirs.get(key), key);
  });
}

test('the schema checks catch what is wrong: a bad type, an unknown field, a root container', () => {
  const deployment = structuredClone(only(rendered.cpu, 'Deployment'));
  deployment.spec.revisionHistoryLimit = 'five';
  assert.throws(() => validateManifest(deployment), /spec\/revisionHistoryLimit must be integer/);
  const unknown = structuredClone(only(rendered.cpu, 'Deployment'));
  unknown.spec.template.spec.containers[0].livenesProbe = {};
  assert.deepEqual(unknownFields(unknown), ['spec.template.spec.containers[0].livenesProbe']);
  const root = structuredClone(only(rendered.cpu, 'Deployment'));
  delete root.spec.template.spec.securityContext.runAsNonRoot;
  root.spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation = true;
  assert.deepEqual(podSecurityProblems(podSpecOf(root)), [
    'runAsNonRoot is not true',
    'container snoopi-serve: allowPrivilegeEscalation is not false',
  ]);
});

// --- wiring ----------------------------------------------------------------------------------------------------------

/** Labels a selector asks for are all on the pod. */
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([key, value]) => labels[key] === value);

for (const overlay of overlays) {
  test(`overlays/${overlay}: Deployment, Service, PodDisruptionBudget and HPA select the same pods`, () => {
    const objects = rendered[overlay];
    const deployment = only(objects, 'Deployment');
    const podLabels = deployment.spec.template.metadata.labels;
    const selector = deployment.spec.selector.matchLabels;
    assert.ok(selects(selector, podLabels), 'the Deployment selects its own pods');
    const service = only(objects, 'Service', 'snoopi-serve');
    assert.deepEqual(service.spec.selector, selector);
    const pdb = only(objects, 'PodDisruptionBudget');
    assert.deepEqual(pdb.spec.selector.matchLabels, selector);
    const hpa = only(objects, 'HorizontalPodAutoscaler');
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    assert.equal(deployment.spec.replicas, undefined, 'the HPA owns the replica count');
    assert.ok(hpa.spec.minReplicas >= 2 && hpa.spec.minReplicas > pdb.spec.minAvailable, 'a drain may always evict one replica');
    // The trainer's rendezvous Service must not pick up serving pods, nor the other way round.
    const trainerService = only(objects, 'Service', 'snoopi-trainer');
    assert.ok(!selects(trainerService.spec.selector, podLabels));
    const trainerPods = loadYaml(join(k8sDir, 'base', 'trainer-job-template.yaml'))[0]!.spec.template.metadata.labels;
    assert.ok(!selects(service.spec.selector, trainerPods));
  });

  test(`overlays/${overlay}: ports, probes and settings: the Service reaches the port the app listens on; probes hit real routes`, async (t: TestContext) => {
    const objects = rendered[overlay];
    const deployment = only(objects, 'Deployment');
    const container = deployment.spec.template.spec.containers.find((candidate: any) => candidate.name === 'snoopi-serve');
    const configMap = only(objects, 'ConfigMap');

    // The settings as the service itself reads them: every key is one of its variables, every value valid.
    const knownVariables = new Set(Object.values(settingSources).map((source) => source.env));
    for (const name of Object.keys(configMap.data)) assert.ok(knownVariables.has(name), `ConfigMap key ${name} is not a setting`);
    for (const { name } of container.env ?? []) assert.ok(knownVariables.has(name), `env ${name} is not a setting`);
    const settings = containerSettings(configMap);
    assert.deepEqual(container.envFrom, [{ configMapRef: { name: configMap.metadata.name } }]);

    const port = container.ports.find((candidate: any) => candidate.name === 'http');
    assert.equal(port.containerPort, settings.port);
    const service = only(objects, 'Service', 'snoopi-serve');
    assert.deepEqual(
      service.spec.ports.map((servicePort: any) => servicePort.targetPort),
      ['http'],
      'the Service targets the container port by name',
    );

    const built = await build(t, { warm: false });
    const probes = { startupProbe: '/readyz', livenessProbe: '/healthz', readinessProbe: '/readyz' };
    for (const [probe, path] of Object.entries(probes)) {
      assert.deepEqual(container[probe].httpGet, { path, port: 'http' }, probe);
      assert.ok(built.app.hasRoute({ method: 'GET', url: path }), `${probe}: the app has no GET ${path}`);
    }
    // Model loading: the startup probe allows minutes before liveness takes over.
    assert.ok(container.startupProbe.periodSeconds * container.startupProbe.failureThreshold >= 120);

    // Stopping: preStop, then the shutdown grace for in-flight requests, each at most its queue deadline plus its
    // generation, must end before the kubelet's SIGKILL.
    const preStopSeconds = Number(container.lifecycle.preStop.exec.command[1]);
    assert.deepEqual(container.lifecycle.preStop.exec.command, ['sleep', String(preStopSeconds)]);
    const budgetMs = deployment.spec.template.spec.terminationGracePeriodSeconds * 1000;
    assert.ok(budgetMs > preStopSeconds * 1000 + settings.deadlineMs + settings.shutdownGraceMs, `${budgetMs} ms`);

    if (overlay === 'gpu') {
      const metrics = await built.app.inject({ method: 'GET', url: '/metrics' });
      const hpa = only(objects, 'HorizontalPodAutoscaler');
      const metric = hpa.spec.metrics[0].pods.metric.name;
      assert.match(metrics.body, new RegExp(`^# TYPE ${metric} gauge$`, 'm'), `the app exports no gauge ${metric}`);
    }
  });

  test(`overlays/${overlay}: non-root, read-only root filesystem, /tmp and the models volume, resources`, () => {
    const objects = rendered[overlay];
    const deployment = only(objects, 'Deployment');
    const pod = podSpecOf(deployment);
    assert.deepEqual(podSecurityProblems(pod), []);
    assert.deepEqual([pod.securityContext.runAsUser, pod.securityContext.runAsGroup], [image.uid, image.gid], 'the image user');

    const settings = containerSettings(only(objects, 'ConfigMap'));
    const claim = only(objects, 'PersistentVolumeClaim');
    assert.deepEqual(claim.spec.accessModes, ['ReadWriteMany'], 'every replica and the trainer Jobs share it');
    const volumes = new Map(pod.volumes.map((volume: any) => [volume.name, volume]));
    assert.deepEqual(volumes.get('models'), { name: 'models', persistentVolumeClaim: { claimName: claim.metadata.name } });
    assert.deepEqual(volumes.get('tmp'), { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } });
    for (const container of containersOf(deployment)) {
      assert.equal(container.securityContext.readOnlyRootFilesystem, true, container.name);
      for (const mount of container.volumeMounts) assert.ok(volumes.has(mount.name), `${container.name}: volume ${mount.name}`);
      assert.ok(container.resources.requests.cpu !== undefined && container.resources.requests.memory !== undefined, container.name);
      assert.ok(container.resources.limits.memory !== undefined, container.name);
    }
    const [seed, serve] = [pod.initContainers[0], pod.containers[0]];
    assert.deepEqual(
      serve.volumeMounts.map((mount: any) => [mount.name, mount.mountPath]),
      [
        ['models', settings.modelsDir],
        ['tmp', '/tmp'],
      ],
    );
    assert.deepEqual(seed.volumeMounts, [{ name: 'models', mountPath: settings.modelsDir }]);
    assert.match(settings.jobsDir, new RegExp(`^${settings.modelsDir}/\\.`), 'job records on the volume, in a dot-folder');
    assert.equal(settings.intraOpThreads, Number(serve.resources.requests.cpu), 'onnxruntime threads = the CPU request');
    assert.equal(settings.jobRunner, 'kubernetes');

    // The Job template the runner loads is the one the image carries.
    assert.ok(image.copied.includes(settings.k8sJobTemplate), settings.k8sJobTemplate);
  });
}

test('overlays: cpu and gpu differ only where they should', () => {
  const cpu = byKey(rendered.cpu);
  const gpu = byKey(rendered.gpu);
  const serve = (objects: Map<string, Manifest>) => objects.get('Deployment/snoopi-serve')!.spec.template.spec;
  assert.equal(serve(cpu).containers[0].image, 'snoopi-serve:0.1.0-cpu');
  assert.equal(serve(gpu).containers[0].image, 'snoopi-serve:0.1.0');
  assert.equal(serve(cpu).containers[0].resources.limits['nvidia.com/gpu'], undefined);
  assert.equal(serve(gpu).containers[0].resources.limits['nvidia.com/gpu'], '1');
  assert.deepEqual(serve(gpu).tolerations, [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
  assert.equal(cpu.get('ConfigMap/snoopi-serve-config')!.data.SNOOPI_EXECUTION_PROVIDER, 'cpu');
  assert.equal(gpu.get('ConfigMap/snoopi-serve-config')!.data.SNOOPI_EXECUTION_PROVIDER, 'cuda');
  assert.deepEqual(cpu.get('HorizontalPodAutoscaler/snoopi-serve')!.spec.metrics, [
    { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } },
  ]);
  assert.deepEqual(gpu.get('HorizontalPodAutoscaler/snoopi-serve')!.spec.metrics, [
    { type: 'Pods', pods: { metric: { name: 'snoopi_queue_depth' }, target: { type: 'AverageValue', averageValue: '32' } } },
  ]);
});

// --- RBAC ------------------------------------------------------------------------------------------------------------

/** The RBAC rule each Kubernetes API call of the job runner needs: [apiGroup, resource, verb]. */
const rbacOfCall: Record<string, [string, string, string]> = {
  createNamespacedJob: ['batch', 'jobs', 'create'],
  readNamespacedJob: ['batch', 'jobs', 'get'],
  readNamespacedJobStatus: ['batch', 'jobs/status', 'get'],
  listNamespacedJob: ['batch', 'jobs', 'list'],
  deleteNamespacedJob: ['batch', 'jobs', 'delete'],
  readNamespacedPod: ['', 'pods', 'get'],
  listNamespacedPod: ['', 'pods', 'list'],
  readNamespacedPodLog: ['', 'pods/log', 'get'],
  'logs.log': ['', 'pods/log', 'get'],
};

test('RBAC: the service account may do exactly what the job runner does, in its namespace only', () => {
  const objects = rendered.gpu;
  const role = only(objects, 'Role');
  const binding = only(objects, 'RoleBinding');
  const account = only(objects, 'ServiceAccount');
  assert.deepEqual(role.rules, [
    { apiGroups: ['batch'], resources: ['jobs'], verbs: ['create', 'get', 'list', 'watch', 'delete'] },
    { apiGroups: ['batch'], resources: ['jobs/status'], verbs: ['get'] },
    { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] },
    { apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
  ]);
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: account.metadata.name, namespace: 'snoopi' }]);
  assert.equal(only(objects, 'Deployment').spec.template.spec.serviceAccountName, account.metadata.name);

  const runner = readFileSync(join(repoRoot, 'src', 'jobs', 'kubernetes-runner.ts'), 'utf8');
  const calls = new Set([...runner.matchAll(/\.(?:batch|core)\s*\.(\w+)\(/g)].map((match) => match[1]!));
  if (/\.logs\s*\.log\(/.test(runner)) calls.add('logs.log');
  assert.ok(calls.size > 0);
  const allowed = (group: string, resource: string, verb: string) =>
    role.rules.some((rule: any) => rule.apiGroups.includes(group) && rule.resources.includes(resource) && rule.verbs.includes(verb));
  for (const call of calls) {
    const needed = rbacOfCall[call];
    assert.ok(needed !== undefined, `the job runner calls ${call}: add the RBAC rule it needs to this table and to the Role`);
    assert.ok(allowed(...needed), `the job runner calls ${call}, which needs ${needed.join(' ')}`);
  }
});

test('the models PersistentVolumeClaim is the one the trainer Job template mounts', () => {
  const claim = only(rendered.gpu, 'PersistentVolumeClaim');
  const template = loadYaml(join(k8sDir, 'base', 'trainer-job-template.yaml'))[0]!;
  const volume = template.spec.template.spec.volumes.find((candidate: any) => candidate.name === 'models');
  assert.equal(volume.persistentVolumeClaim.claimName, claim.metadata.name);
});
