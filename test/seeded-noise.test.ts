import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { imageSeed, mulberry32, randomSeed, seededNoise } from '../src/noise/seeded-noise.js';

test('mulberry32 gives the documented sequence', () => {
  const next = mulberry32(42);
  assert.deepEqual([next(), next(), next(), next()], [2581720956, 1925393290, 3661312704, 2876485805]);
});

test('the Python transcription in seeded-noise.ts reproduces the values', () => {
  // Step 1 to 3 of the header comment, written independently in Python (float64 math, numpy rounding to float32).
  const script = [
    'import json, math, sys',
    'import numpy as np',
    'def mulberry32(s):',
    '    while True:',
    '        s = (s + 0x6D2B79F5) & 0xFFFFFFFF',
    '        t = s',
    '        t = ((t ^ (t >> 15)) * (t | 1)) & 0xFFFFFFFF',
    '        t = (t ^ ((t + (((t ^ (t >> 7)) * (t | 61)) & 0xFFFFFFFF)) & 0xFFFFFFFF))',
    '        yield t ^ (t >> 14)',
    'def noise(seed, count):',
    '    g, out = mulberry32(seed), []',
    '    while len(out) < count:',
    '        u1 = (next(g) + 1) / 2**32',
    '        u2 = next(g) / 2**32',
    '        r = math.sqrt(-2 * math.log(u1))',
    '        out += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]',
    '    return np.array(out[:count], dtype=np.float32)',
    'print(json.dumps({str(s): noise(s, 1025).view(np.uint32).tolist() for s in (0, 1, 42, 4294967295)}))',
  ].join('\n');
  const expected = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8' })) as Record<string, number[]>;
  for (const [seed, bits] of Object.entries(expected)) {
    const values = seededNoise(Number(seed), 1025);
    assert.deepEqual([...new Uint32Array(values.buffer)], bits, `seed ${seed}`);
  }
});

test('noise is standard normal', () => {
  const values = seededNoise(7, 200_000);
  const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
  const variance = values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / values.length;
  assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 0.01, `variance ${variance}`);
  assert.ok(values.every(Number.isFinite));
});

test('the same seed gives the same noise, another seed other noise; writing into a view works', () => {
  const a = seededNoise(123, 1024);
  assert.deepEqual(seededNoise(123, 1024), a);
  assert.notDeepEqual(seededNoise(124, 1024), a);
  const batch = new Float32Array(3 * 1024);
  seededNoise(123, 1024, batch.subarray(1024, 2048));
  assert.deepEqual(batch.subarray(1024, 2048), a);
  assert.deepEqual(batch.subarray(0, 1024), new Float32Array(1024));
  // A prefix of the noise does not depend on the count (odd counts drop the last sine).
  assert.deepEqual(seededNoise(123, 7), a.subarray(0, 7));
});

test('image seeds wrap modulo 2^32', () => {
  assert.equal(imageSeed(42, 0), 42);
  assert.equal(imageSeed(42, 3), 45);
  assert.equal(imageSeed(4294967295, 1), 0);
  assert.equal(imageSeed(4294967294, 7), 5);
});

test('seeds outside 0..2^32-1 are refused; random seeds lie inside', () => {
  assert.throws(() => seededNoise(-1, 4), /seed must be an integer in 0..4294967295, got -1/);
  assert.throws(() => seededNoise(2 ** 32, 4), RangeError);
  assert.throws(() => seededNoise(1.5, 4), RangeError);
  for (let i = 0; i < 100; i++) {
    const seed = randomSeed();
    assert.ok(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32);
  }
});
