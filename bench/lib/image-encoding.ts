// How long one image takes to encode, and how large it is: the service's own encoder (src/images/image-encoder.ts)
// for png, jpeg and webp on generated images, and (full run) a sweep of sharp's PNG settings over generated images,
// flat shapes like the shapes world's training images and noisy 512x512 shapes (a stand-in for a Stable Diffusion
// sized output) -- the numbers behind the encoder's choice of PNG level -- and the PNG crossover: png-writer.ts
// against sharp at the same level on noisy shapes from 64x64 to 512x512, the numbers behind PNG_WRITER_MAX_PIXELS.
import { performance } from 'node:perf_hooks';
import sharp, { type Sharp } from 'sharp';
import { PNG_COMPRESSION_LEVEL, encodeImage, type ImageFormat } from '../../src/images/image-encoder.js';
import { writePng } from '../../src/images/png-writer.js';
import { seededNoise } from '../../src/noise/seeded-noise.js';
import { summarize } from './stats.js';

export interface EncodingTiming {
  images: string;
  encoder: string;
  width: number;
  height: number;
  medianMs: number;
  p90Ms: number;
  meanBytes: number;
}

export interface ImageSet {
  name: string;
  pixels: Uint8Array[];
  width: number;
  height: number;
}

const WARMUP_CALLS = 20;

async function time(set: ImageSet, encoder: string, roundsAt64: number, encode: (pixels: Uint8Array) => Buffer | Promise<Buffer>): Promise<EncodingTiming> {
  // Fewer rounds for larger images (at least 10): a 512x512 PNG at level 9 takes a quarter of a second.
  const rounds = Math.max(10, Math.round((roundsAt64 * 64 * 64) / (set.width * set.height)));
  for (let i = 0; i < Math.max(WARMUP_CALLS, set.pixels.length); i++) await encode(set.pixels[i % set.pixels.length]!);
  const times: number[] = [];
  let bytes = 0;
  for (let round = 0; round < rounds; round++) {
    const pixels = set.pixels[round % set.pixels.length]!;
    const started = performance.now();
    bytes += (await encode(pixels)).length;
    times.push(performance.now() - started);
  }
  const stats = summarize(times);
  return { images: set.name, encoder, width: set.width, height: set.height, medianMs: stats.p50, p90Ms: stats.p90, meanBytes: bytes / rounds };
}

/**
 * A flat background with a flat circle and square, as trainer/shapes.py renders them, scaled to `size`; `noise` adds
 * a seeded +-noise/2 to every channel (a stand-in for a large model's textured output).
 */
export function shapesImages(count: number, size: number, noise: number): Uint8Array[] {
  const scale = size / 64;
  return Array.from({ length: count }, (_, k) => {
    const pixels = new Uint8Array(size * size * 3);
    const jitter = seededNoise(k, noise > 0 ? pixels.length : 0);
    const background = [240, 128, 20][k % 3]!;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const i = (y * size + x) * 3;
        const [u, v] = [x / scale, y / scale];
        const inCircle = (u - 20) ** 2 + (v - 30) ** 2 < 12 ** 2;
        const inSquare = u > 36 + (k % 5) && u < 56 && v > 10 && v < 30;
        const rgb = inCircle ? [220, 40, 40] : inSquare ? [40, 80, 220] : [background, background, background];
        for (let c = 0; c < 3; c++) pixels[i + c] = rgb[c]! + (noise > 0 ? Math.round((jitter[i + c]! * noise) / 4) : 0);
      }
    }
    return pixels;
  });
}

type SharpEncoder = (image: Sharp) => Sharp;

const sharpRaw = (set: ImageSet, pixels: Uint8Array): Sharp =>
  sharp(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength), { raw: { width: set.width, height: set.height, channels: 3 } });

function sweepEncoders(): [string, SharpEncoder][] {
  const encoders: [string, SharpEncoder][] = [];
  for (const level of [0, 1, 3, 6, 9]) {
    for (const adaptiveFiltering of [false, true]) {
      encoders.push([`sharp png level ${level}${adaptiveFiltering ? ' adaptive' : ''}`, (image) => image.png({ compressionLevel: level, adaptiveFiltering })]);
    }
  }
  encoders.push(['sharp jpeg q90', (image) => image.jpeg({ quality: 90 })], ['sharp webp q90', (image) => image.webp({ quality: 90 })]);
  return encoders;
}

export async function measureImageEncoding(generated: ImageSet, options: { rounds: number; sweep: boolean }): Promise<EncodingTiming[]> {
  const results: EncodingTiming[] = [];
  for (const format of ['png', 'jpeg', 'webp'] as ImageFormat[]) {
    results.push(
      await time(generated, `service ${format}${format === 'png' ? '' : ' q90'}`, options.rounds, async (pixels) =>
        (await encodeImage(pixels, generated.width, generated.height, format, 90)).data,
      ),
    );
  }
  if (!options.sweep) return results;
  const sets: ImageSet[] = [
    generated,
    { name: 'flat shapes', pixels: shapesImages(generated.pixels.length, 64, 0), width: 64, height: 64 },
    { name: 'noisy shapes', pixels: shapesImages(generated.pixels.length, 512, 6), width: 512, height: 512 },
  ];
  for (const set of sets) {
    for (const [name, encode] of sweepEncoders()) {
      results.push(await time(set, name, options.rounds, (pixels) => encode(sharpRaw(set, pixels)).toBuffer()));
    }
  }
  const level = PNG_COMPRESSION_LEVEL;
  for (const size of [64, 128, 256, 512]) {
    const set: ImageSet = { name: 'png crossover, noisy shapes', pixels: shapesImages(generated.pixels.length, size, 6), width: size, height: size };
    results.push(
      await time(set, `sharp png level ${level}`, options.rounds, (pixels) => sharpRaw(set, pixels).png({ compressionLevel: level, adaptiveFiltering: false }).toBuffer()),
      await time(set, `png-writer level ${level}`, options.rounds, (pixels) => writePng(pixels, size, size, { compressionLevel: level })),
    );
  }
  return results;
}
