// Faults of the registry and the models folder, through a listening server and real package files: a package that
// breaks under a loaded model, anonymous requests for many models, and a model engine that dies.
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { build } from './helpers/build.js';
import { TEST_MODEL_DIR, testManifest } from './helpers/test-model.js';

/** A models folder holding a copy of the test package under each id. */
async function modelsFolder(t: TestContext, ids: string[]): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'snoopi-faults-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const manifest = await testManifest();
  for (const id of ids) {
    await cp(TEST_MODEL_DIR, join(root, id), { recursive: true });
    await writeFile(join(root, id, 'model.json'), JSON.stringify({ ...manifest, id }, null, 2));
  }
  return root;
}

async function generate(url: string, body: object): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${url}/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'a red circle', seed: 1, ...body }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function loadedModels(url: string): Promise<string[]> {
  const { data } = (await (await fetch(`${url}/models`)).json()) as { data: { id: string; loaded: boolean }[] };
  return data.filter((model) => model.loaded).map((model) => model.id);
}

test('a package that breaks on disk under the loaded active model: a rescan keeps serving it and says so', async (t) => {
  const modelsDir = await modelsFolder(t, ['alpha', 'beta']);
  const { url } = await build(t, { settings: { modelsDir, activeModel: 'alpha' }, listen: true });
  assert.equal((await generate(url, {})).status, 200);

  await writeFile(join(modelsDir, 'alpha', 'model.json'), JSON.stringify({ format_version: 2 }));
  const unknown = await generate(url, { model: 'nope' }); // an unknown id makes the registry scan the folder again
  assert.deepEqual(unknown, {
    status: 404,
    body: { statusCode: 404, code: 'SNOOPI_MODEL_NOT_FOUND', error: 'Not Found', message: 'Model nope not found; known models: alpha, beta' },
  });

  const served = await generate(url, {});
  assert.equal(served.status, 200);
  assert.equal(served.body.model, 'alpha');
  assert.deepEqual(await (await fetch(`${url}/readyz`)).json(), { status: 'ready', model: 'alpha' });
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /^snoopi_stale_packages\{model="alpha"\} 1$/m);
  assert.doesNotMatch(metrics, /snoopi_stale_packages\{model="beta"\}/);

  // beta, never loaded, is simply gone once its package breaks: it cannot be loaded from a broken package.
  await writeFile(join(modelsDir, 'beta', 'model.json'), '{');
  assert.equal((await generate(url, { model: 'nope' })).status, 404);
  assert.deepEqual((await generate(url, { model: 'beta' })).body.code, 'SNOOPI_MODEL_NOT_FOUND');
  assert.equal((await generate(url, {})).status, 200);
});

test('SNOOPI_MAX_LOADED_MODELS: beyond it the least recently used model that is not active is unloaded', async (t) => {
  const modelsDir = await modelsFolder(t, ['alpha', 'beta', 'gamma', 'delta']);
  const { url } = await build(t, { settings: { modelsDir, activeModel: 'alpha', maxLoadedModels: 2 }, listen: true });
  assert.deepEqual(await loadedModels(url), ['alpha']);
  for (const [model, expected] of [
    ['beta', ['alpha', 'beta']],
    ['gamma', ['alpha', 'gamma']],
    ['beta', ['alpha', 'beta']],
    ['delta', ['alpha', 'delta']],
  ] as const) {
    const response = await generate(url, { model });
    assert.equal(response.status, 200, model);
    assert.equal(response.body.model, model);
    // the evicted model drains, then closes: wait for its close (a few ms)
    for (let tries = 0; tries < 100 && (await loadedModels(url)).length > 2; tries++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(await loadedModels(url), expected, `after a request for ${model}`);
  }
  assert.equal((await generate(url, {})).status, 200);
  assert.deepEqual(await loadedModels(url), ['alpha', 'delta']);
});

test('an engine worker that dies mid-batch: that batch gets a 500, /readyz says why while it restarts, later requests wait for it and succeed', async (t) => {
  const modelsDir = await modelsFolder(t, ['alpha']);
  const generators: Worker[] = [];
  let readyWhileRestarting: Promise<{ statusCode: number; body: string }> | undefined;
  const { app, url } = await build(t, {
    settings: { modelsDir, activeModel: 'alpha' },
    listen: true,
    onWorker: (worker, graph) => {
      if (graph !== 'generator.onnx') return;
      // Registered before the engine's own listener: the next turn sees the engine restarting the worker.
      if (generators.length === 0) worker.once('exit', () => setImmediate(() => (readyWhileRestarting = app.inject({ method: 'GET', url: '/readyz' }))));
      generators.push(worker);
    },
  });
  assert.equal((await generate(url, {})).status, 200);
  assert.equal(generators.length, 1);

  // End the generator's thread when it is handed a batch: the batch is in flight and its worker gone. (Ended while
  // onnxruntime is inside a run, the thread takes the whole process down with it: no test can do that.)
  const first = generators[0]!;
  const post = first.postMessage.bind(first);
  first.postMessage = (message: { kind: string }, transfer?: readonly ArrayBuffer[]) => {
    if (message.kind === 'run') void first.terminate();
    else post(message, transfer as ArrayBuffer[]);
  };
  const failed = await generate(url, { num_images: 4 });
  assert.equal(failed.status, 500);
  assert.equal(failed.body.code, 'SNOOPI_ENGINE_FAILED');
  assert.match(String(failed.body.message), /^Inference failed: generator\.onnx: the worker exited with code 1$/);

  for (let tries = 0; tries < 100 && readyWhileRestarting === undefined; tries++) await new Promise((resolve) => setTimeout(resolve, 5));
  const during = await readyWhileRestarting!;
  assert.equal(during.statusCode, 503);
  assert.equal(JSON.parse(during.body).message, 'The service is not ready: a worker of its engine died and is restarting (generator.onnx: the worker exited with code 1)');

  const after = await generate(url, { num_images: 4 });
  assert.equal(after.status, 200);
  assert.equal(generators.length, 2);
  assert.deepEqual(await (await fetch(`${url}/readyz`)).json(), { status: 'ready', model: 'alpha' });
  assert.match(await (await fetch(`${url}/metrics`)).text(), /^snoopi_engine_restarts_total\{model="alpha"\} 1$/m);
});
