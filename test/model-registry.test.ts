import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { defaultModel as benchDefaultModel } from '../bench/lib/run-suite.js';
import { EmbeddingCache } from '../src/cache/embedding-cache.js';
import { manifestProblems, type ModelManifest } from '../src/registry/model-manifest.js';
import { ModelRegistry, type ModelRegistryOptions, type RegistryLog } from '../src/registry/model-registry.js';
import { TEST_MODEL_DIR, testManifest } from './helpers/test-model.js';

async function modelsRoot(t: TestContext, ids: string[]): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'snoopi-registry-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  for (const id of ids) await addPackage(root, id);
  return root;
}

async function addPackage(root: string, id: string, changes: Partial<ModelManifest> = {}): Promise<void> {
  await cp(TEST_MODEL_DIR, join(root, id), { recursive: true });
  const manifest = await testManifest();
  await writeFile(join(root, id, 'model.json'), JSON.stringify({ ...manifest, ...changes, id }, null, 2));
}

function recordingLog() {
  const lines: string[] = [];
  const log: RegistryLog = {
    info: (_, message) => lines.push(`info ${message}`),
    warn: (_, message) => lines.push(`warn ${message}`),
    error: (_, message) => lines.push(`error ${message}`),
  };
  return { log, lines };
}

async function openRegistry(t: TestContext, modelsDir: string, options: Partial<ModelRegistryOptions> = {}) {
  const registry = await ModelRegistry.open({
    modelsDir,
    engine: { executionProvider: 'cpu', intraOpThreads: 1 },
    batching: { maxBatchRows: 8, maxQueueRows: 64, deadlineMs: Infinity },
    cache: new EmbeddingCache({ maxBytes: 1 << 20 }),
    ...options,
  });
  t.after(() => registry.close());
  return registry;
}

function rowsFor(registry: ModelRegistry, id: string) {
  const { manifest } = registry.loadedModel(id)!;
  const noise = new Float32Array(manifest.latent.channels * manifest.latent.height * manifest.latent.width);
  const embedding = new Float32Array(manifest.text.max_length * manifest.text.hidden_size);
  return { rows: 1, noise, embedding, negativeEmbedding: embedding, nasaScale: 0 };
}

test('scanning lists packages, skips folders without model.json and invalid packages, picks the first id as active', async (t) => {
  const root = await modelsRoot(t, ['zeta', 'alpha']);
  await mkdir(join(root, 'base'));
  await writeFile(join(root, 'base', 'clip.pt'), 'not a package');
  await mkdir(join(root, 'broken'));
  await writeFile(join(root, 'broken', 'model.json'), JSON.stringify({ format_version: 1, id: 'broken' }));
  const { log, lines } = recordingLog();
  const registry = await openRegistry(t, root, { log });
  assert.deepEqual(registry.list().map((entry) => [entry.id, entry.dir]), [
    ['alpha', join(root, 'alpha')],
    ['zeta', join(root, 'zeta')],
  ]);
  assert.equal(registry.activeId, 'alpha');
  assert.deepEqual(lines, ['warn skipping an invalid model package']);
  assert.equal(registry.isReady(), false);
});

test('without an explicit choice the best-distilled package is active: pg-sb, then sb, then by id', async (t) => {
  const root = await modelsRoot(t, []);
  await addPackage(root, 'a-teacher-init', { method: 'teacher-init' });
  await addPackage(root, 'b-sb', { method: 'sb' });
  await addPackage(root, 'd-pgsb', { method: 'pg-sb' });
  await addPackage(root, 'c-pgsb', { method: 'pg-sb' });
  assert.equal((await openRegistry(t, root)).activeId, 'c-pgsb');
});

test('among packages of one method the lowest recorded FID is active by default, one without a FID after', async (t) => {
  const root = await modelsRoot(t, []);
  const { training } = await testManifest();
  const withFid = (value: number) => ({
    method: 'pg-sb' as const,
    training: { ...training, metrics: { fid: { n: 256, value } } },
  });
  await addPackage(root, 'a-pgsb', { method: 'pg-sb' });
  await addPackage(root, 'b-pgsb', withFid(0.21));
  await addPackage(root, 'c-pgsb', withFid(0.03));
  await addPackage(root, 'd-sb', { method: 'sb', training: withFid(0.01).training });
  assert.equal((await openRegistry(t, root)).activeId, 'c-pgsb');
  assert.equal(await benchDefaultModel(root), 'c-pgsb'); // the benchmark measures the model the service would serve
  await rm(join(root, 'c-pgsb'), { recursive: true });
  await rm(join(root, 'b-pgsb'), { recursive: true });
  assert.equal((await openRegistry(t, root)).activeId, 'a-pgsb');
  assert.equal(await benchDefaultModel(root), 'a-pgsb');
});

test('an explicit active model must exist', async (t) => {
  const root = await modelsRoot(t, ['alpha']);
  await assert.rejects(openRegistry(t, root, { activeModel: 'nope' }), {
    code: 'SNOOPI_MODEL_NOT_FOUND',
    statusCode: 404,
    message: 'Model nope not found; known models: alpha',
  });
});

test('loads are memoised per id and leave the model warmed and ready', async (t) => {
  const root = await modelsRoot(t, ['alpha']);
  const { log, lines } = recordingLog();
  const registry = await openRegistry(t, root, { log });
  const [first, second] = await Promise.all([registry.load('alpha'), registry.load('alpha')]);
  assert.equal(first, second);
  assert.equal(await registry.load('alpha'), first);
  assert.equal(registry.isReady(), true);
  assert.equal(first.engine.provider, 'cpu');
  assert.equal(first.tokenizer.maxLength, first.manifest.text.max_length);
  assert.deepEqual(lines, ['info model graphs loaded']);
});

test('an unknown id is SNOOPI_MODEL_NOT_FOUND; a package exported after start is found without a restart', async (t) => {
  const root = await modelsRoot(t, ['alpha']);
  const registry = await openRegistry(t, root);
  await assert.rejects(registry.acquire('beta'), { code: 'SNOOPI_MODEL_NOT_FOUND', message: 'Model beta not found; known models: alpha' });
  await addPackage(root, 'beta');
  const lease = await registry.acquire('beta');
  assert.equal(lease.model.id, 'beta');
  lease.release();
  assert.deepEqual(registry.list().map((entry) => entry.id), ['alpha', 'beta']);
});

test('a corrupted file fails the load with SNOOPI_MODEL_LOAD_FAILED naming it; after repair the load is retried', async (t) => {
  const root = await modelsRoot(t, ['alpha']);
  const merges = join(root, 'alpha', 'tokenizer', 'merges.txt');
  const original = await readFile(merges);
  const corrupted = Buffer.from(original);
  corrupted[corrupted.length - 2] ^= 1;
  await writeFile(merges, corrupted);
  const { log, lines } = recordingLog();
  const registry = await openRegistry(t, root, { log });
  await assert.rejects(registry.load('alpha'), (error: Error & { code: string; statusCode: number }) => {
    assert.equal(error.code, 'SNOOPI_MODEL_LOAD_FAILED');
    assert.equal(error.statusCode, 500);
    assert.match(error.message, /^Model alpha could not be loaded: .*model\.json: tokenizer\/merges\.txt: sha256 [0-9a-f]{64}, model\.json says [0-9a-f]{64}$/);
    return true;
  });
  assert.deepEqual(lines, ['error model load failed']);
  assert.equal(registry.isReady(), false);
  await writeFile(merges, original);
  const model = await registry.load('alpha');
  assert.equal(model.id, 'alpha');
  assert.equal(registry.isReady(), true);
});

test('a tokenizer whose bos/eos ids differ from model.json is refused', async (t) => {
  const root = await modelsRoot(t, ['alpha']);
  const path = join(root, 'alpha', 'model.json');
  const manifest = JSON.parse(await readFile(path, 'utf8')) as ModelManifest;
  const bos = manifest.text.bos_token_id + 1;
  await writeFile(path, JSON.stringify({ ...manifest, text: { ...manifest.text, bos_token_id: bos } }));
  const registry = await openRegistry(t, root);
  await assert.rejects(registry.load('alpha'), {
    code: 'SNOOPI_MODEL_LOAD_FAILED',
    message:
      `Model alpha could not be loaded: the tokenizer's bos/eos ids ${manifest.text.bos_token_id}/${manifest.text.eos_token_id} ` +
      `differ from model.json's ${bos}/${manifest.text.eos_token_id}`,
  });
});

test('activation swaps the default without dropping in-flight requests; the old engine closes when its last lease ends', async (t) => {
  const root = await modelsRoot(t, ['alpha', 'beta']);
  const { log, lines } = recordingLog();
  const registry = await openRegistry(t, root, { log });
  const inFlight = await registry.acquire();
  assert.equal(inFlight.model.id, 'alpha');
  const alpha = inFlight.model;

  await registry.activate('beta');
  assert.equal(registry.activeId, 'beta');
  const next = await registry.acquire();
  assert.equal(next.model.id, 'beta');
  next.release();

  // The request that held alpha before the swap still runs on alpha.
  const result = await alpha.batcher.submit(rowsFor(registry, 'alpha'), { rows: 1 });
  assert.equal(result.result.length, alpha.manifest.image.width * alpha.manifest.image.height * 3);
  assert.equal(registry.loadedModel('alpha'), alpha);
  inFlight.release();
  inFlight.release(); // a second release does nothing
  assert.equal(registry.loadedModel('alpha'), undefined);
  while (!lines.includes('info model unloaded')) await new Promise((resolve) => setTimeout(resolve, 1));
  await assert.rejects(alpha.engine.encodeText(new BigInt64Array(alpha.manifest.text.max_length), 1), { code: 'SNOOPI_ENGINE_FAILED' });
  assert.deepEqual(lines, [
    'info model graphs loaded',
    'info model graphs loaded',
    'info model activated',
    'info model unloaded',
  ]);

  // Asking for the retired model by name loads it again.
  const again = await registry.acquire('alpha');
  assert.notEqual(again.model, alpha);
  again.release();
});

test('activating an unknown model fails and keeps the active one', async (t) => {
  const root = await modelsRoot(t, ['alpha']);
  const registry = await openRegistry(t, root);
  await assert.rejects(registry.activate('nope'), { code: 'SNOOPI_MODEL_NOT_FOUND' });
  assert.equal(registry.activeId, 'alpha');
});

test('close lets leased requests finish, then refuses new leases', async (t) => {
  const root = await modelsRoot(t, ['alpha']);
  const registry = await openRegistry(t, root);
  const lease = await registry.acquire();
  let closed = false;
  const closing = registry.close().then(() => {
    closed = true;
  });
  await assert.rejects(registry.acquire(), { code: 'SNOOPI_SHUTTING_DOWN' });
  const result = await lease.model.batcher.submit(rowsFor(registry, 'alpha'), { rows: 1 });
  assert.equal(result.batchRows, 1);
  assert.equal(closed, false);
  lease.release();
  await closing;
  assert.equal(registry.isReady(), false);
});

test('manifest validation names each bad field once', async () => {
  const manifest = await testManifest();
  assert.deepEqual(manifestProblems(manifest), []);
  const { display_name: _name, ...withoutName } = manifest;
  assert.deepEqual(manifestProblems({ ...withoutName, format_version: 2, teacher: 3 }), [
    '/display_name: Expected required property',
    '/format_version: Expected 1',
    '/teacher: Expected string',
  ]);
  const { 'generator.onnx': _dropped, ...otherFiles } = manifest.files;
  assert.deepEqual(
    manifestProblems({
      ...manifest,
      nasa: { default_scale: 2, max_scale: 1 },
      files: { ...otherFiles, '../outside.bin': { sha256: '0'.repeat(64), bytes: 1 } },
    }),
    ['/nasa/default_scale: 2 is above max_scale 1', '/files: generator.onnx is missing', '/files: ../outside.bin leaves the package folder'],
  );
  assert.deepEqual(manifestProblems({ ...manifest, method: 'magic', image: { width: 0, height: 64 } }), [
    '/method: Expected union value',
    '/image/width: Expected integer to be greater or equal to 1',
  ]);
});

test('a package whose id differs from its folder name is skipped', async (t) => {
  const root = await modelsRoot(t, ['alpha']);
  await cp(join(root, 'alpha'), join(root, 'copy'), { recursive: true });
  const registry = await openRegistry(t, root);
  assert.deepEqual(registry.list().map((entry) => entry.id), ['alpha']);
});
