// Raw RGB pixels (H x W x 3, uint8) to PNG, JPEG or WebP bytes: small PNGs with png-writer.ts on the calling thread,
// everything else with sharp.
import sharp from 'sharp';
import { writePng } from './png-writer.js';

export type ImageFormat = 'png' | 'jpeg' | 'webp';

export const CONTENT_TYPES: Record<ImageFormat, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
};

// zlib level 1 without adaptive filtering, for both PNG encoders. At 64x64 sharp's per-call cost dominates: every level takes 0.55-0.9 ms,
// level 1 is among the fastest, and its files are 12% (generated images) to 30% (flat shapes, ~390 bytes) larger than
// level 6's (bench/lib/image-encoding.ts). The level matters at Stable Diffusion sizes: the bench's noisy 512x512
// shapes took ~15 ms at level 1 against ~60 ms at level 6 (sharp's default, with adaptive filtering ~50 ms), for a
// file 1.6x larger. CPU is what the serving machines run out of first (docs/design/README.md),
// not bytes on the wire.
export const PNG_COMPRESSION_LEVEL = 1;

// PNGs up to this many pixels are written by png-writer.ts, synchronously: at 64x64 it takes a third or less of
// sharp's time, where sharp's fixed cost per call (pipeline setup, two thread-pool hops) dominates, and at 128x128
// still less. By 256x256 the two are even and at 512x512 sharp is faster, and it keeps the event loop free meanwhile
// (bench/lib/image-encoding.ts, --full: "png crossover"). Files are smaller than sharp's at the same zlib level.
export const PNG_WRITER_MAX_PIXELS = 128 * 128;

export interface EncodedImage {
  data: Buffer;
  contentType: string;
}

/**
 * Encodes `pixels` (row-major H x W x 3). `quality` (1..100) applies to jpeg and webp. `pixels` may be a view into
 * a larger batch buffer; it is read without copying.
 */
export async function encodeImage(
  pixels: Uint8Array,
  width: number,
  height: number,
  format: ImageFormat,
  quality: number,
): Promise<EncodedImage> {
  if (pixels.length !== width * height * 3) {
    throw new RangeError(`expected ${width}x${height}x3 = ${width * height * 3} bytes of RGB, got ${pixels.length}`);
  }
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new RangeError(`quality must be an integer in 1..100, got ${quality}`);
  }
  if (format === 'png' && width * height <= PNG_WRITER_MAX_PIXELS) {
    return { data: writePng(pixels, width, height, { compressionLevel: PNG_COMPRESSION_LEVEL }), contentType: CONTENT_TYPES.png };
  }
  const input = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  const image = sharp(input, { raw: { width, height, channels: 3 } });
  const encoder =
    format === 'png'
      ? image.png({ compressionLevel: PNG_COMPRESSION_LEVEL, adaptiveFiltering: false })
      : format === 'jpeg'
        ? image.jpeg({ quality })
        : image.webp({ quality });
  return { data: await encoder.toBuffer(), contentType: CONTENT_TYPES[format] };
}
