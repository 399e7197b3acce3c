// Health, readiness, the model list, metrics and the API docs.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../src/config/paths.js';
import type { ModelManifest } from '../src/registry/model-manifest.js';
import { build } from './helpers/build.js';

test('/healthz answers 200 at once, even before the model is loaded', async (t) => {
  const { app } = await build(t, { warm: false });
  const response = await app.inject('/healthz');
  assert.equal(response.statusCode, 200);
  assert.deepEqual(response.json(), { status: 'ok' });
});

test('/readyz is 503 with Retry-After until the active model is loaded and warmed, then 200', async (t) => {
  const { app, service } = await build(t, { warm: false });
  const notReady = { statusCode: 503, code: 'SNOOPI_NOT_READY', error: 'Service Unavailable', message: 'The service is not ready: the active model is still loading' };
  const before = await app.inject('/readyz');
  assert.equal(before.statusCode, 503);
  assert.equal(before.headers['retry-after'], '5');
  assert.deepEqual(before.json(), notReady);
  const generate = await app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a red circle' } });
  assert.equal(generate.statusCode, 503, 'inference is refused early while loading');
  assert.deepEqual(generate.json(), notReady);

  await service.ready();
  const after = await app.inject('/readyz');
  assert.equal(after.statusCode, 200);
  assert.deepEqual(after.json(), { status: 'ready', model: service.stats().activeModel });
});

async function manifestsOnDisk(modelsDir: string): Promise<ModelManifest[]> {
  const manifests: ModelManifest[] = [];
  for (const entry of await readdir(modelsDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const text = await readFile(join(modelsDir, entry.name, 'model.json'), 'utf8').catch(() => undefined);
    if (text !== undefined) manifests.push(JSON.parse(text) as ModelManifest);
  }
  return manifests.sort((a, b) => a.id.localeCompare(b.id));
}

test('/models lists every package of the registry; the active one is loaded on the cpu provider', async (t) => {
  const built = await build(t);
  const active = built.service.stats().activeModel;
  const response = await built.app.inject('/models');
  assert.equal(response.statusCode, 200);
  const expected = (await manifestsOnDisk(built.settings.modelsDir)).map((manifest) => ({
    id: manifest.id,
    display_name: manifest.display_name,
    backbone: manifest.backbone,
    method: manifest.method,
    parameterization: manifest.parameterization,
    active: manifest.id === active,
    loaded: manifest.id === active,
    image: manifest.image,
    nasa: manifest.nasa,
    execution_provider: manifest.id === active ? 'cpu' : null,
    metrics: manifest.training.metrics,
  }));
  const data = response.json().data.sort((a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id));
  assert.deepEqual({ data }, { data: expected });
});

/** The value of one sample, found by name and exact label set (in any order); undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`).sort().join(',');
  for (const line of text.split('\n')) {
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const have = (match[2] ?? '').split(/,(?=[a-z_]+=")/).filter(Boolean).sort().join(',');
    if (have === wanted) return Number(match[3]);
  }
  return undefined;
}

test('/metrics counts requests by route and status, batches, cache use, queue depth and the active model', async (t) => {
  const { app, service } = await build(t);
  const model = service.stats().activeModel!;
  const scrape = async () => {
    const response = await app.inject('/metrics');
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    return response.body;
  };
  const before = await scrape();
  const request = { prompt: 'a metric red circle', negative_prompt: 'a metric blue square', negative_scale: 0, seed: 5, num_images: 3 };
  assert.equal((await app.inject({ method: 'POST', url: '/generate', payload: request })).statusCode, 200);
  assert.equal((await app.inject({ method: 'POST', url: '/generate', payload: request })).statusCode, 200);
  assert.equal((await app.inject({ method: 'POST', url: '/generate', payload: { prompt: '' } })).statusCode, 400);
  assert.equal((await app.inject('/nope')).statusCode, 404);
  const after = await scrape();
  const delta = (name: string, labels: Record<string, string> = {}) => (sample(after, name, labels) ?? 0) - (sample(before, name, labels) ?? 0);

  const generate200 = { method: 'POST', route: '/generate', status_code: '200' };
  assert.equal(sample(after, 'snoopi_http_requests_total', generate200), 2);
  assert.equal(sample(after, 'snoopi_http_requests_total', { ...generate200, status_code: '400' }), 1);
  assert.equal(sample(after, 'snoopi_http_requests_total', { method: 'GET', route: 'unmatched', status_code: '404' }), 1);
  assert.equal(sample(after, 'snoopi_http_requests_total', { method: 'GET', route: '/metrics', status_code: '200' }), 1);
  assert.equal(sample(after, 'snoopi_http_request_duration_seconds_count', generate200), 2);
  assert.equal(sample(after, 'snoopi_http_request_duration_seconds_bucket', { ...generate200, le: '+Inf' }), 2);

  assert.equal(delta('snoopi_batch_size_count', { model }), 2);
  assert.equal(delta('snoopi_batch_size_sum', { model }), 6);
  assert.equal(delta('snoopi_batch_size_bucket', { model, le: '2' }), 0);
  assert.equal(delta('snoopi_batch_size_bucket', { model, le: '4' }), 2);
  assert.equal(delta('snoopi_engine_inference_seconds_count', { model }), 2);
  assert.ok(delta('snoopi_engine_inference_seconds_sum', { model }) > 0);
  assert.equal(delta('snoopi_batches_failed_total', { model }), 0);

  assert.equal(delta('snoopi_embedding_cache_misses_total'), 2, 'the first request encodes its prompt and negative prompt');
  assert.equal(delta('snoopi_embedding_cache_hits_total'), 2, 'the second finds both in the cache');
  assert.equal(delta('snoopi_embedding_cache_entries'), 2);
  assert.ok(delta('snoopi_embedding_cache_bytes') > 0);

  assert.equal(sample(after, 'snoopi_queue_depth', { model }), 0);
  assert.equal(sample(after, 'snoopi_queue_requests', { model }), 0);
  assert.equal(sample(after, 'snoopi_active_model', { model, execution_provider: 'cpu' }), 1);
  assert.equal(sample(after, 'snoopi_ready'), 1);
});

test('/openapi.json serves the checked-in document and /docs the Swagger UI', async (t) => {
  const { app } = await build(t);
  const served = await app.inject('/openapi.json');
  assert.equal(served.statusCode, 200);
  assert.deepEqual(served.json(), JSON.parse(await readFile(join(repoRoot, 'openapi', 'openapi.json'), 'utf8')));
  const docs = await app.inject('/docs/');
  assert.equal(docs.statusCode, 200);
  assert.equal(docs.headers['content-type'], 'text/html; charset=utf-8');
  assert.match(docs.body, /<title>Swagger UI<\/title>/);
});
