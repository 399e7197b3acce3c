// A minimal PNG writer for 8-bit RGB, synchronous and on the calling thread: signature, IHDR, one IDAT, IEND.
// It exists for small images, where sharp's fixed cost per call (pipeline setup and two thread-pool hops) is most of
// the time: see image-encoder.ts for when it is used and bench/lib/image-encoding.ts for the measurements.
// Scanlines are not filtered (filter type 0): on generated 64x64 images the "sub" and "up" filters shrank the files by
// only a few percent and cost more time; unfiltered, node:zlib at level 1 already makes smaller files than sharp's.
// zlib.crc32 needs Node 20.15 or later (package.json engines).
import { crc32, deflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const BYTES_PER_PIXEL = 3;
const BIT_DEPTH = 8;
const COLOR_TYPE_RGB = 2;
const FILTER_NONE = 0;

export interface PngOptions {
  /** zlib level, 0..9. */
  compressionLevel: number;
}

/** A chunk: length, type, data, CRC-32 of type and data. */
function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** The scanlines PNG compresses: per row a filter-type byte, then the row as it is. */
function scanlines(pixels: Uint8Array, width: number, height: number): Uint8Array {
  const rowBytes = width * BYTES_PER_PIXEL;
  const out = new Uint8Array(height * (rowBytes + 1));
  for (let y = 0; y < height; y++) {
    out[y * (rowBytes + 1)] = FILTER_NONE;
    out.set(pixels.subarray(y * rowBytes, (y + 1) * rowBytes), y * (rowBytes + 1) + 1);
  }
  return out;
}

/** Encodes `pixels` (row-major height x width x 3, uint8) as a PNG file. */
export function writePng(pixels: Uint8Array, width: number, height: number, { compressionLevel }: PngOptions): Buffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`width and height must be positive integers, got ${width}x${height}`);
  }
  if (pixels.length !== width * height * BYTES_PER_PIXEL) {
    throw new RangeError(`expected ${width}x${height}x3 = ${width * height * BYTES_PER_PIXEL} bytes of RGB, got ${pixels.length}`);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = BIT_DEPTH;
  header[9] = COLOR_TYPE_RGB;
  // Bytes 10-12: compression method 0 (deflate), filter method 0 (adaptive, per-row filter types), no interlace.
  const data = deflateSync(scanlines(pixels, width, height), { level: compressionLevel });
  return Buffer.concat([SIGNATURE, chunk('IHDR', header), chunk('IDAT', data), chunk('IEND', new Uint8Array(0))]);
}
