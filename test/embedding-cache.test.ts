import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EmbeddingCache } from '../src/cache/embedding-cache.js';

const embeddingOf = (value: number, length = 4) => new Float32Array(length).fill(value);
// Bytes one entry takes: 4 float32 values plus the key (model id, NUL, the comma-joined ids) as UTF-16.
const entryBytes = (model: string, ids: number[], values = 4) => values * 4 + (model.length + 1 + ids.join(',').length) * 2;

test('a miss computes, a hit returns the same array without computing', async () => {
  const cache = new EmbeddingCache({ maxBytes: 1 << 20 });
  let computed = 0;
  const compute = async () => {
    computed++;
    return embeddingOf(7);
  };
  const first = await cache.get('m', [1, 2, 3], compute);
  const second = await cache.get('m', [1, 2, 3], compute);
  assert.equal(first.hit, false);
  assert.equal(second.hit, true);
  assert.equal(second.embedding, first.embedding);
  assert.equal(computed, 1);
  assert.deepEqual(cache.stats(), { hits: 1, misses: 1, bytes: entryBytes('m', [1, 2, 3]), entries: 1 });
});

test('the key is model id plus token ids', async () => {
  const cache = new EmbeddingCache({ maxBytes: 1 << 20 });
  await cache.get('a', [1, 2], async () => embeddingOf(1));
  const otherModel = await cache.get('b', [1, 2], async () => embeddingOf(2));
  const otherIds = await cache.get('a', [1, 2, 0], async () => embeddingOf(3));
  const sameKey = await cache.get('a', [1, 2], async () => embeddingOf(4));
  assert.deepEqual([otherModel.hit, otherIds.hit, sameKey.hit], [false, false, true]);
  assert.deepEqual([...sameKey.embedding], [1, 1, 1, 1]);
  assert.equal(cache.stats().entries, 3);
});

test('concurrent misses on one key compute once', async () => {
  const cache = new EmbeddingCache({ maxBytes: 1 << 20 });
  let computed = 0;
  let finish: (value: Float32Array) => void = () => {};
  const compute = () => {
    computed++;
    return new Promise<Float32Array>((resolve) => {
      finish = resolve;
    });
  };
  const lookups = [cache.get('m', [5], compute), cache.get('m', [5], compute), cache.get('m', [5], compute)];
  finish(embeddingOf(9));
  const results = await Promise.all(lookups);
  assert.equal(computed, 1);
  assert.deepEqual(results.map((result) => result.hit), [false, true, true]);
  assert.equal(results[1]!.embedding, results[0]!.embedding);
  assert.deepEqual(cache.stats(), { hits: 2, misses: 1, bytes: entryBytes('m', [5]), entries: 1 });
});

test('a failed computation rejects every waiter and is forgotten, so the next lookup retries', async () => {
  const cache = new EmbeddingCache({ maxBytes: 1 << 20 });
  let fail: (error: Error) => void = () => {};
  const failing = () =>
    new Promise<Float32Array>((_, reject) => {
      fail = reject;
    });
  const lookups = [cache.get('m', [1], failing), cache.get('m', [1], failing)];
  fail(new Error('encoder down'));
  const settled = await Promise.allSettled(lookups);
  assert.deepEqual(settled.map((result) => result.status), ['rejected', 'rejected']);
  assert.equal(cache.stats().entries, 0);
  const retry = await cache.get('m', [1], async () => embeddingOf(3));
  assert.equal(retry.hit, false);
  assert.deepEqual(cache.stats(), { hits: 1, misses: 2, bytes: entryBytes('m', [1]), entries: 1 });
});

test('bytes are bounded: the least recently used entry is evicted', async () => {
  const oneEntry = entryBytes('m', [1]);
  const cache = new EmbeddingCache({ maxBytes: oneEntry * 2 });
  await cache.get('m', [1], async () => embeddingOf(1));
  await cache.get('m', [2], async () => embeddingOf(2));
  await cache.get('m', [1], async () => embeddingOf(-1)); // touch [1], so [2] is the oldest
  await cache.get('m', [3], async () => embeddingOf(3));
  assert.deepEqual(cache.stats(), { hits: 1, misses: 3, bytes: oneEntry * 2, entries: 2 });
  assert.equal((await cache.get('m', [1], async () => embeddingOf(-1))).hit, true);
  assert.equal((await cache.get('m', [2], async () => embeddingOf(2))).hit, false);
});

test('an embedding larger than the whole cache is returned but not kept', async () => {
  const cache = new EmbeddingCache({ maxBytes: 64 });
  const result = await cache.get('m', [1], async () => embeddingOf(1, 100));
  assert.equal(result.embedding.length, 100);
  assert.deepEqual(cache.stats(), { hits: 0, misses: 1, bytes: 0, entries: 0 });
});

test('deleteModel drops only that model', async () => {
  const cache = new EmbeddingCache({ maxBytes: 1 << 20 });
  await cache.get('a', [1], async () => embeddingOf(1));
  await cache.get('ab', [1], async () => embeddingOf(1));
  cache.deleteModel('a');
  assert.deepEqual(cache.stats(), { hits: 0, misses: 2, bytes: entryBytes('ab', [1]), entries: 1 });
});
