import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { PNG_COMPRESSION_LEVEL, PNG_WRITER_MAX_PIXELS, encodeImage } from '../src/images/image-encoder.js';
import { writePng } from '../src/images/png-writer.js';

const WIDTH = 64;
const HEIGHT = 48;

/** A test picture: a gradient with a red square. */
function picture(): Uint8Array {
  const pixels = new Uint8Array(WIDTH * HEIGHT * 3);
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      const i = (y * WIDTH + x) * 3;
      const inSquare = x >= 10 && x < 30 && y >= 10 && y < 30;
      pixels[i] = inSquare ? 220 : x * 4;
      pixels[i + 1] = inSquare ? 40 : y * 5;
      pixels[i + 2] = inSquare ? 40 : 128;
    }
  }
  return pixels;
}

async function decode(data: Buffer) {
  const { data: raw, info } = await sharp(data).raw().toBuffer({ resolveWithObject: true });
  return { raw: new Uint8Array(raw), info: { width: info.width, height: info.height, channels: info.channels, format: info.format } };
}

test('png is lossless: decoding gives the pixels back', async () => {
  const pixels = picture();
  const encoded = await encodeImage(pixels, WIDTH, HEIGHT, 'png', 90);
  assert.equal(encoded.contentType, 'image/png');
  assert.deepEqual([...encoded.data.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const decoded = await decode(encoded.data);
  assert.deepEqual(decoded.info, { width: WIDTH, height: HEIGHT, channels: 3, format: 'raw' });
  assert.deepEqual(decoded.raw, pixels);
});

test('small PNGs come from png-writer, larger ones from sharp; both are lossless', async () => {
  const side = Math.sqrt(PNG_WRITER_MAX_PIXELS);
  for (const [width, height, writer] of [[side, side, true], [side + 1, side, false]] as const) {
    const pixels = new Uint8Array(width * height * 3).map((_, i) => (i * 7) % 251);
    const encoded = await encodeImage(pixels, width, height, 'png', 90);
    assert.equal(encoded.data.equals(writePng(pixels, width, height, { compressionLevel: PNG_COMPRESSION_LEVEL })), writer, `${width}x${height}`);
    const decoded = await decode(encoded.data);
    assert.deepEqual(decoded.info, { width, height, channels: 3, format: 'raw' });
    assert.deepEqual(decoded.raw, pixels);
  }
});

test('a view into a larger batch buffer encodes only its own pixels', async () => {
  const one = picture();
  const batch = new Uint8Array(one.length * 3);
  batch.set(one, one.length);
  const encoded = await encodeImage(batch.subarray(one.length, 2 * one.length), WIDTH, HEIGHT, 'png', 90);
  assert.deepEqual((await decode(encoded.data)).raw, one);
});

test('jpeg and webp have their signatures and dimensions, and quality changes the size', async () => {
  const pixels = picture();
  const jpeg = await encodeImage(pixels, WIDTH, HEIGHT, 'jpeg', 90);
  assert.equal(jpeg.contentType, 'image/jpeg');
  assert.deepEqual([...jpeg.data.subarray(0, 3)], [0xff, 0xd8, 0xff]);
  const webp = await encodeImage(pixels, WIDTH, HEIGHT, 'webp', 90);
  assert.equal(webp.contentType, 'image/webp');
  assert.equal(webp.data.subarray(0, 4).toString('latin1'), 'RIFF');
  assert.equal(webp.data.subarray(8, 12).toString('latin1'), 'WEBP');
  for (const encoded of [jpeg, webp]) {
    const { info } = await decode(encoded.data);
    assert.deepEqual([info.width, info.height], [WIDTH, HEIGHT]);
  }
  const lowQuality = await encodeImage(pixels, WIDTH, HEIGHT, 'jpeg', 10);
  assert.ok(lowQuality.data.length < jpeg.data.length, `${lowQuality.data.length} < ${jpeg.data.length}`);
});

test('wrong pixel counts and qualities are refused', async () => {
  await assert.rejects(encodeImage(new Uint8Array(10), 4, 4, 'png', 90), /expected 4x4x3 = 48 bytes of RGB, got 10/);
  await assert.rejects(encodeImage(new Uint8Array(48), 4, 4, 'jpeg', 0), /quality must be an integer in 1..100, got 0/);
});
