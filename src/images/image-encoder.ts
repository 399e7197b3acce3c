// Raw RGB pixels (H x W x 3, uint8) to PNG, JPEG or WebP bytes: small PNGs with png-writer.ts on the calling thread,
// everything else with sharp.
import sharp from 'sharp';
import { writePng } from './png-writer.js';

export const imageFormats = ['png', 'jpeg', 'webp'] as const;
export type ImageFormat = (typeof imageFormats)[number];
/** jpeg's and webp's quality setting. */
export const qualityRange = { minimum: 1, maximum: 100 } as const;

export const CONTENT_TYPES: Record<ImageFormat, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
};

// zlib level 1 without adaptive filtering, for both PNG encoders: CPU is what the serving machines run out of first
// (docs/design/README.md), not bytes on the wire. At 64x64 sharp's fixed cost per call dominates; at Stable
// Diffusion sizes level 1 takes a fraction of the time of higher levels, for a larger file. The sweep behind
// this choice: bench/results/full/report.md, Image encoding (`npm run bench:full`).
export const PNG_COMPRESSION_LEVEL = 1;

// PNGs up to this many pixels are written by png-writer.ts, synchronously: for small images sharp's fixed cost per
// call (pipeline setup, two thread-pool hops) outweighs the encoding itself. Large images go to sharp, faster there,
// and off the event loop. The limit sits below the crossover the bench measures (bench/results/full/report.md, Image
// encoding: "png crossover"). png-writer's files are smaller than sharp's at the same zlib level.
export const PNG_WRITER_MAX_PIXELS = 128 * 128;

export interface EncodedImage {
  data: Buffer;
  contentType: string;
}

/**
 * Encodes `pixels` (row-major H x W x 3). `quality` (qualityRange) applies to jpeg and webp. `pixels` may be a view into
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
  if (!Number.isInteger(quality) || quality < qualityRange.minimum || quality > qualityRange.maximum) {
    throw new RangeError(`quality must be an integer in ${qualityRange.minimum}..${qualityRange.maximum}, got ${quality}`);
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
