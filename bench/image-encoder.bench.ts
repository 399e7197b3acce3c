// How long sharp takes to encode one generated image, and how large the result is, for each PNG compression level
// (with and without adaptive filtering) and for JPEG/WebP at quality 90. Images: real generator outputs of a model
// package, and flat-colored shapes like the shapes world's training images (what a trained student approaches).
//   node dist/bench/image-encoder.bench.js [models/<id>] [images]
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp, { type Sharp } from 'sharp';
import { createEngine } from '../src/engine/engine.js';
import { seededNoise } from '../src/noise/seeded-noise.js';
import { loadManifest } from '../src/registry/model-manifest.js';

const packageDir = process.argv[2] ?? 'models/shapes-fixture';
const imageCount = Number(process.argv[3] ?? 16);
const ROUNDS = Number(process.env.ROUNDS ?? 300);

async function generatedImages(): Promise<{ pixels: Uint8Array[]; width: number; height: number }> {
  const id = packageDir.split('/').filter(Boolean).at(-1)!;
  const manifest = await loadManifest(packageDir, id, { verifyFiles: false });
  const engine = await createEngine({ packageDir, manifest, executionProvider: 'cpu', intraOpThreads: 2 });
  const { channels, height, width } = manifest.latent;
  const noiseSize = channels * height * width;
  const embeddingSize = manifest.text.max_length * manifest.text.hidden_size;
  const noise = new Float32Array(imageCount * noiseSize);
  for (let i = 0; i < imageCount; i++) seededNoise(i, noiseSize, noise.subarray(i * noiseSize, (i + 1) * noiseSize));
  const states = new Float32Array(imageCount * embeddingSize);
  const image = await engine.generate({
    noise,
    encoderHiddenStates: states,
    negativeEncoderHiddenStates: states.slice(),
    nasaScale: new Float32Array(imageCount),
    batch: imageCount,
  });
  await engine.close();
  const size = manifest.image.width * manifest.image.height * 3;
  const pixels = Array.from({ length: imageCount }, (_, i) => image.subarray(i * size, (i + 1) * size));
  return { pixels, width: manifest.image.width, height: manifest.image.height };
}

/**
 * A flat background with a flat circle and square, as trainer/shapes.py renders them, scaled to `size`; `noise` adds
 * a seeded +-noise/2 to every channel (a stand-in for a large model's textured output).
 */
function shapesImages(size: number, noise: number): Uint8Array[] {
  const scale = size / 64;
  return Array.from({ length: imageCount }, (_, k) => {
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
        for (let c = 0; c < 3; c++) pixels[i + c] = rgb[c]! + (noise > 0 ? Math.round(jitter[i + c]! * noise / 4) : 0);
      }
    }
    return pixels;
  });
}

type Encode = (image: Sharp) => Sharp;

async function measure(name: string, images: Uint8Array[], width: number, height: number, encode: Encode): Promise<string> {
  const run = (pixels: Uint8Array) =>
    encode(sharp(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength), { raw: { width, height, channels: 3 } })).toBuffer();
  for (const pixels of images) await run(pixels);
  const times: number[] = [];
  let bytes = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const pixels = images[round % images.length]!;
    const started = performance.now();
    bytes += (await run(pixels)).length;
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return `${name.padEnd(28)} median ${times[ROUNDS >> 1]!.toFixed(3)} ms  p90 ${times[Math.floor(ROUNDS * 0.9)]!.toFixed(3)} ms  ${Math.round(bytes / ROUNDS)} bytes`;
}

const generated = await generatedImages();
const sets = [
  { name: `generated (${join(packageDir)})`, images: generated.pixels, width: generated.width, height: generated.height },
  { name: 'flat shapes', images: shapesImages(64, 0), width: 64, height: 64 },
  { name: 'noisy shapes', images: shapesImages(512, 6), width: 512, height: 512 },
];
const encoders: [string, Encode][] = [];
for (const level of [0, 1, 3, 6, 9]) {
  for (const adaptiveFiltering of [false, true]) {
    encoders.push([`png level ${level}${adaptiveFiltering ? ' adaptive' : ''}`, (image) => image.png({ compressionLevel: level, adaptiveFiltering })]);
  }
}
encoders.push(['jpeg q90', (image) => image.jpeg({ quality: 90 })], ['webp q90', (image) => image.webp({ quality: 90 })]);
for (const { name: setName, images, width, height } of sets) {
  console.log(`${setName}: ${images.length} images of ${width}x${height}`);
  for (const [name, encode] of encoders) console.log(`  ${await measure(name, images, width, height, encode)}`);
}
