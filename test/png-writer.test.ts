import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32, inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { writePng } from '../src/images/png-writer.js';
import { seededNoise } from '../src/noise/seeded-noise.js';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Seeded random pixels: the hardest case for the compressor and a check that every byte survives. */
function randomPixels(width: number, height: number, seed: number): Uint8Array {
  return Uint8Array.from(seededNoise(seed, width * height * 3), (value) => Math.floor((value + 4) * 32) & 0xff);
}

/** The file's chunks in order: type, data, and whether the stored CRC matches. */
function chunks(file: Buffer): { type: string; data: Buffer; crcMatches: boolean }[] {
  const found = [];
  for (let offset = SIGNATURE.length; offset < file.length; ) {
    const length = file.readUInt32BE(offset);
    const type = file.toString('latin1', offset + 4, offset + 8);
    const data = file.subarray(offset + 8, offset + 8 + length);
    const crcMatches = file.readUInt32BE(offset + 8 + length) === crc32(file.subarray(offset + 4, offset + 8 + length));
    found.push({ type, data, crcMatches });
    offset += 12 + length;
  }
  return found;
}

test('the file is signature, IHDR (8-bit RGB, no interlace), one IDAT of unfiltered rows, IEND, with valid CRCs', () => {
  const pixels = randomPixels(5, 3, 1);
  const file = writePng(pixels, 5, 3, { compressionLevel: 1 });
  assert.deepEqual([...file.subarray(0, 8)], SIGNATURE);
  const found = chunks(file);
  assert.deepEqual(
    found.map(({ type, crcMatches }) => [type, crcMatches]),
    [['IHDR', true], ['IDAT', true], ['IEND', true]],
  );
  const header = found[0]!.data;
  assert.deepEqual(
    { width: header.readUInt32BE(0), height: header.readUInt32BE(4), bitDepth: header[8], colorType: header[9], rest: [...header.subarray(10)] },
    { width: 5, height: 3, bitDepth: 8, colorType: 2, rest: [0, 0, 0] },
  );
  assert.equal(found[2]!.data.length, 0);
  const rows = inflateSync(found[1]!.data);
  assert.equal(rows.length, 3 * (1 + 5 * 3));
  for (let y = 0; y < 3; y++) {
    assert.equal(rows[y * 16], 0, `row ${y} filter type`);
    assert.deepEqual(new Uint8Array(rows.subarray(y * 16 + 1, (y + 1) * 16)), pixels.subarray(y * 15, (y + 1) * 15));
  }
});

test('sharp decodes exactly the pixels written, at every size', async () => {
  for (const [width, height] of [[1, 1], [2, 7], [64, 64], [64, 48], [128, 128], [200, 3]] as const) {
    const pixels = randomPixels(width, height, width * 1000 + height);
    const file = writePng(pixels, width, height, { compressionLevel: 1 });
    const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual({ width: info.width, height: info.height, channels: info.channels }, { width, height, channels: 3 }, `${width}x${height}`);
    assert.deepEqual(new Uint8Array(data), pixels, `${width}x${height}`);
  }
});

test('a view into a larger buffer is read without its neighbours; the level changes the size, not the pixels', async () => {
  const one = new Uint8Array(64 * 64 * 3).map((_, i) => (i % 192 < 96 ? 30 : 200));
  const batch = new Uint8Array(one.length * 3).fill(7);
  batch.set(one, one.length);
  const fast = writePng(batch.subarray(one.length, 2 * one.length), 64, 64, { compressionLevel: 1 });
  const small = writePng(one, 64, 64, { compressionLevel: 9 });
  assert.ok(small.length < fast.length, `${small.length} < ${fast.length}`);
  for (const file of [fast, small]) assert.deepEqual(new Uint8Array(await sharp(file).raw().toBuffer()), one);
});

test('wrong sizes are refused', () => {
  assert.throws(() => writePng(new Uint8Array(10), 4, 4, { compressionLevel: 1 }), /expected 4x4x3 = 48 bytes of RGB, got 10/);
  assert.throws(() => writePng(new Uint8Array(0), 0, 4, { compressionLevel: 1 }), /width and height must be positive integers, got 0x4/);
});
