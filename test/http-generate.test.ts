// POST /generate end to end on the real model: JSON and raw image answers, seeds, timings, truncation, formats.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { activeManifest, build } from './helpers/build.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Width and height from a PNG's IHDR chunk, which must come first. */
function pngSize(data: Buffer): { width: number; height: number } {
  assert.deepEqual(data.subarray(0, 8), PNG_SIGNATURE);
  assert.equal(data.subarray(12, 16).toString('ascii'), 'IHDR');
  return { width: data.readUInt32BE(16), height: data.readUInt32BE(20) };
}

const serverTimingPattern =
  /^receive;dur=\d+\.\d{2}, queue;dur=\d+\.\d{2}, encode;dur=\d+\.\d{2}, generate;dur=\d+\.\d{2}, image;dur=\d+\.\d{2}, total;dur=\d+\.\d{2}, serialise;dur=\d+\.\d{2}$/;

test('JSON answer: one image per seed, the model, timings, batch size and truncation flags', async (t) => {
  const built = await build(t);
  const manifest = await activeManifest(built);
  const before = Math.floor(Date.now() / 1000);
  const response = await built.app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a red circle', seed: 42, num_images: 3 } });
  const after = Math.floor(Date.now() / 1000);
  assert.equal(response.statusCode, 200);
  assert.equal(response.headers['content-type'], 'application/json; charset=utf-8');
  assert.match(String(response.headers['server-timing']), serverTimingPattern);
  const body = response.json();
  assert.deepEqual(Object.keys(body), ['model', 'created', 'images', 'timings', 'batch_size', 'truncated', 'negative_truncated', 'negative_scale']);
  assert.equal(body.model, manifest.id);
  assert.ok(body.created >= before && body.created <= after);
  assert.equal(body.batch_size, 3);
  assert.equal(body.truncated, false);
  assert.equal(body.negative_truncated, false);
  assert.equal(body.negative_scale, 0);
  assert.deepEqual(Object.keys(body.timings), ['queue_ms', 'encode_ms', 'generate_ms', 'image_ms', 'total_ms']);
  for (const value of Object.values<number>(body.timings)) assert.ok(value >= 0);
  assert.ok(body.timings.total_ms >= body.timings.generate_ms);
  assert.deepEqual(
    body.images.map((image: Record<string, unknown>) => ({ ...image, b64_json: undefined })),
    [42, 43, 44].map((seed) => ({ seed, content_type: 'image/png', width: manifest.image.width, height: manifest.image.height, b64_json: undefined })),
  );
  for (const image of body.images) assert.deepEqual(pngSize(Buffer.from(image.b64_json, 'base64')), manifest.image);
});

test('an error answer carries no Server-Timing', async (t) => {
  const built = await build(t);
  const response = await built.app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a red circle', model: 'no-such-model' } });
  assert.equal(response.statusCode, 404);
  assert.equal(response.headers['server-timing'], undefined);
});

test('Accept: image/png with num_images 1 answers the PNG itself with X-Seed, X-Model and Server-Timing', async (t) => {
  const built = await build(t);
  const manifest = await activeManifest(built);
  const response = await built.app.inject({ method: 'POST', url: '/generate', headers: { accept: 'image/png' }, payload: { prompt: 'a red circle', seed: 7 } });
  assert.equal(response.statusCode, 200);
  assert.equal(response.headers['content-type'], 'image/png');
  assert.equal(response.headers['x-seed'], '7');
  assert.equal(response.headers['x-model'], manifest.id);
  assert.match(String(response.headers['server-timing']), serverTimingPattern);
  assert.deepEqual(pngSize(response.rawPayload), manifest.image);

  const json = await built.app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a red circle', seed: 7 } });
  assert.deepEqual(Buffer.from(json.json().images[0].b64_json, 'base64'), response.rawPayload, 'the same seed gives the same bytes');
});

test('the image type comes from Accept when the body names no format, and from the body otherwise', async (t) => {
  const built = await build(t);
  const manifest = await activeManifest(built);
  const cases: [Record<string, unknown>, string | undefined, string, string][] = [
    [{ prompt: 'a green square', seed: 1 }, 'image/jpeg', 'image/jpeg', 'jpeg'],
    [{ prompt: 'a green square', seed: 1 }, 'image/webp', 'image/webp', 'webp'],
    [{ prompt: 'a green square', seed: 1, format: 'webp' }, 'image/*', 'image/webp', 'webp'],
    [{ prompt: 'a green square', seed: 1, format: 'jpeg', quality: 50 }, 'image/jpeg, application/json;q=0.5', 'image/jpeg', 'jpeg'],
  ];
  for (const [payload, accept, contentType, format] of cases) {
    const response = await built.app.inject({ method: 'POST', url: '/generate', headers: accept ? { accept } : {}, payload });
    assert.equal(response.statusCode, 200, `${accept}`);
    assert.equal(response.headers['content-type'], contentType);
    const metadata = await sharp(response.rawPayload).metadata();
    assert.deepEqual({ format: metadata.format, width: metadata.width, height: metadata.height }, { format, ...manifest.image });
  }
  const json = await built.app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a green square', format: 'webp' } });
  assert.equal(json.json().images[0].content_type, 'image/webp');
  const jsonPreferred = await built.app.inject({
    method: 'POST',
    url: '/generate',
    headers: { accept: 'image/png, application/json;q=0.5' },
    payload: { prompt: 'a green square', num_images: 2 },
  });
  assert.equal(jsonPreferred.headers['content-type'], 'application/json; charset=utf-8', 'two images fall back to the JSON the client also accepts');
  assert.equal(jsonPreferred.json().images.length, 2);
});

test('seeds: image i uses seed + i mod 2^32; without a seed a random one is echoed', async (t) => {
  const { app } = await build(t);
  const wrapped = await app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a blue triangle', seed: 4294967295, num_images: 2 } });
  assert.deepEqual(wrapped.json().images.map((image: { seed: number }) => image.seed), [4294967295, 0]);
  const random = (await app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a blue triangle', num_images: 2 } })).json();
  const [first, second] = random.images.map((image: { seed: number }) => image.seed);
  assert.ok(Number.isInteger(first) && first >= 0 && first <= 4294967295);
  assert.equal(second, (first + 1) % 4294967296);
});

test('the same request gives the same pixels alone and inside a batch', async (t) => {
  const { app } = await build(t);
  const request = { prompt: 'a yellow circle', negative_prompt: 'red', seed: 123 };
  const generate = (payload: object) => app.inject({ method: 'POST', url: '/generate', payload });
  const alone = (await generate(request)).json();
  assert.equal(alone.batch_size, 1);
  await generate({ prompt: 'two shapes' }); // cached now: the requests below reach the batcher within a few ms
  // A batch of 16 images keeps the engine busy while the others queue up; they then run together in the next batch.
  let together = alone;
  for (let attempt = 0; attempt < 5 && together.batch_size === 1; attempt++) {
    const answers = await Promise.all([
      generate({ prompt: 'two shapes', num_images: 8 }),
      generate({ prompt: 'two shapes', num_images: 8 }),
      generate(request),
      ...[1, 2, 3].map((seed) => generate({ prompt: 'two shapes', seed, num_images: 2 })),
    ]);
    together = answers[2]!.json();
  }
  assert.ok(together.batch_size > 1, `batch of ${together.batch_size}`);
  const pixels = (image: { b64_json: string }) => sharp(Buffer.from(image.b64_json, 'base64')).raw().toBuffer();
  const [a, b] = await Promise.all([pixels(alone.images[0]), pixels(together.images[0])]);
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1, `byte ${i}: ${a[i]} vs ${b[i]}`);
});

test('a prompt longer than the model takes is cut and says so; a negative prompt gets the default scale', async (t) => {
  const built = await build(t);
  const manifest = await activeManifest(built);
  const long = Array.from({ length: manifest.text.max_length + 10 }, () => 'red').join(' ');
  const body = (await built.app.inject({ method: 'POST', url: '/generate', payload: { prompt: long, negative_prompt: long } })).json();
  assert.equal(body.truncated, true);
  assert.equal(body.negative_truncated, true);
  assert.equal(body.negative_scale, manifest.nasa.default_scale);
  const explicit = (await built.app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a red circle', negative_prompt: 'blue', negative_scale: 0 } })).json();
  assert.equal(explicit.truncated, false);
  assert.equal(explicit.negative_scale, 0);
});
