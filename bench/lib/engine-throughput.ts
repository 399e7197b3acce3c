// The raw engine: generator.onnx straight through src/engine (the worker thread, onnxruntime's CPU provider, the
// service's session settings) at each batch size, with nothing of the service around it. The ceiling the service
// is measured against. Also checks that the PyTorch baseline ran the same weights (parity files from
// bench/pytorch_eager.py).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createEngine, type Engine } from '../../src/engine/engine.js';
import { DEFAULT_INTRA_OP_WAIT, INTRA_OP_WAITS, type IntraOpWait } from '../../src/engine/intra-op-wait.js';
import type { ModelManifest } from '../../src/registry/model-manifest.js';
import { seededNoise } from '../../src/noise/seeded-noise.js';
import { summarize } from './stats.js';

export interface BatchTiming {
  batch: number;
  runs: number;
  /** Per call. */
  medianMs: number;
  p90Ms: number;
  meanMs: number;
  /** Images over the summed wall time of all timed calls. */
  imagesPerSecond: number;
  /** CPU time of the whole timing process (every thread) over wall time: the cores it actually got. */
  cpuCores: number;
}

export interface EngineResults {
  intraOpThreads: number;
  /** The service's default, which `batches` ran with. */
  intraOpWait: IntraOpWait;
  batches: BatchTiming[];
  best: BatchTiming;
  /** The same engine with each other wait mode, at the plan's otherWaitBatches. */
  otherWaits: { wait: IntraOpWait; batches: BatchTiming[] }[];
  /**
   * Batch 1 and the best batch timed again after the service sections: on a machine whose load drifts, the targets
   * compare the service with the better of the two measurements of the engine.
   */
  recheck: BatchTiming[];
}

export interface ParityResult {
  batch: number;
  /** Largest |PyTorch - onnxruntime| over every pixel channel (grey levels). */
  maxAbsDiff: number;
  /** Channels that differ at all. */
  differing: number;
  channels: number;
}

/**
 * Times `call(batch)` for at least `seconds` (and `minRuns` calls) after two warm-up calls. The one timing loop of
 * the suite: the PyTorch side (bench/pytorch_eager.py) follows the same rule.
 */
export async function timeBatch(batch: number, seconds: number, minRuns: number, call: () => Promise<unknown>): Promise<BatchTiming> {
  for (let i = 0; i < 2; i++) await call();
  const times: number[] = [];
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  while (times.length < minRuns || performance.now() - started < seconds * 1000) {
    const runStarted = performance.now();
    await call();
    times.push(performance.now() - runStarted);
  }
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const stats = summarize(times);
  const totalMs = times.reduce((sum, time) => sum + time, 0);
  return {
    batch,
    runs: times.length,
    medianMs: stats.p50,
    p90Ms: stats.p90,
    meanMs: stats.mean,
    imagesPerSecond: (batch * times.length * 1000) / totalMs,
    cpuCores: (cpu.user + cpu.system) / 1000 / wallMs,
  };
}

export interface GeneratorInputs {
  noise: Float32Array;
  states: Float32Array;
  negativeStates: Float32Array;
  nasaScale: Float32Array;
}

/** Seeded inputs of `batch` rows; fresh arrays each time, because the engine takes ownership of what it is given. */
export function generatorInputs(manifest: ModelManifest, batch: number, seed = 0): GeneratorInputs {
  const noiseSize = manifest.latent.channels * manifest.latent.height * manifest.latent.width;
  const statesSize = manifest.text.max_length * manifest.text.hidden_size;
  const nasaScale = new Float32Array(batch).fill(manifest.nasa.max_scale / 2);
  return {
    noise: seededNoise(seed, batch * noiseSize),
    states: seededNoise(seed + 1, batch * statesSize),
    negativeStates: seededNoise(seed + 2, batch * statesSize),
    nasaScale,
  };
}

/** One generator call on copies of `inputs` (the engine takes ownership of what it is given), `batch` rows. */
export function generateCopies(engine: Engine, inputs: GeneratorInputs, batch: number): Promise<Uint8Array> {
  return engine.generate({
    noise: inputs.noise.slice(),
    encoderHiddenStates: inputs.states.slice(),
    negativeEncoderHiddenStates: inputs.negativeStates.slice(),
    nasaScale: inputs.nasaScale.slice(),
    batch,
  });
}

export function openEngine(packageDir: string, manifest: ModelManifest, intraOpThreads: number, intraOpWait = DEFAULT_INTRA_OP_WAIT): Promise<Engine> {
  return createEngine({ packageDir, manifest, executionProvider: 'cpu', intraOpThreads, intraOpWait });
}

async function timeEngine(engine: Engine, manifest: ModelManifest, batches: readonly number[], seconds: number, minRuns: number): Promise<BatchTiming[]> {
  await engine.warmup();
  const timings: BatchTiming[] = [];
  for (const batch of batches) {
    // Inputs are made before the clock starts; the copies the engine needs are cheap next to a generator call.
    const inputs = generatorInputs(manifest, batch);
    timings.push(
      await timeBatch(batch, seconds, minRuns, () => generateCopies(engine, inputs, batch)),
    );
  }
  return timings;
}

export function bestBatch(timings: readonly BatchTiming[]): BatchTiming {
  return timings.reduce((best, timing) => (timing.imagesPerSecond > best.imagesPerSecond ? timing : best));
}

export interface EngineSection {
  /** Null when no batch sizes were asked for (the images section alone). */
  results: EngineResults | null;
  /** Absent when no parity files were given. */
  parity: ParityResult | undefined;
  /** `imageCount` generated images (seeded inputs), for the image-encoding section. */
  images: Uint8Array[];
}

/** Times the engine at each batch size (and with the other wait modes, if asked), checks parity, and keeps a few images. */
export async function measureEngine(
  packageDir: string,
  manifest: ModelManifest,
  options: { intraOpThreads: number; batches: number[]; secondsPerBatch: number; minRuns: number; otherWaitBatches: number[]; parityDir?: string; imageCount: number },
): Promise<EngineSection> {
  const engine = await openEngine(packageDir, manifest, options.intraOpThreads);
  let batches: BatchTiming[];
  let parity: ParityResult | undefined;
  let images: Uint8Array[];
  try {
    batches = await timeEngine(engine, manifest, options.batches, options.secondsPerBatch, options.minRuns);
    parity = options.parityDir === undefined ? undefined : await checkParity(engine, options.parityDir);
    images = await generatedImages(engine, manifest, options.imageCount);
  } finally {
    await engine.close();
  }
  const otherWaits: EngineResults['otherWaits'] = [];
  for (const wait of options.otherWaitBatches.length > 0 ? INTRA_OP_WAITS.filter((mode) => mode !== DEFAULT_INTRA_OP_WAIT) : []) {
    const other = await openEngine(packageDir, manifest, options.intraOpThreads, wait);
    try {
      otherWaits.push({ wait, batches: await timeEngine(other, manifest, options.otherWaitBatches, options.secondsPerBatch, options.minRuns) });
    } finally {
      await other.close();
    }
  }
  const results =
    batches.length > 0
      ? { intraOpThreads: options.intraOpThreads, intraOpWait: DEFAULT_INTRA_OP_WAIT, batches, best: bestBatch(batches), otherWaits, recheck: [] }
      : null;
  return { results, parity, images };
}

/** Times the engine again at `batches` (a fresh session, as in measureEngine). */
export async function recheckEngine(
  packageDir: string,
  manifest: ModelManifest,
  options: { intraOpThreads: number; batches: number[]; secondsPerBatch: number; minRuns: number },
): Promise<BatchTiming[]> {
  const engine = await openEngine(packageDir, manifest, options.intraOpThreads);
  try {
    return await timeEngine(engine, manifest, options.batches, options.secondsPerBatch, options.minRuns);
  } finally {
    await engine.close();
  }
}

interface ParityTensor {
  file: string;
  dims: number[];
}

/** Runs the parity inputs bench/pytorch_eager.py wrote through the engine and compares the pixels. */
async function checkParity(engine: Engine, parityDir: string): Promise<ParityResult> {
  const description = JSON.parse(await readFile(join(parityDir, 'parity.json'), 'utf8')) as { batch: number; inputs: Record<string, ParityTensor>; image: ParityTensor };
  const floats = async (tensor: ParityTensor) => {
    const bytes = await readFile(join(parityDir, tensor.file));
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice();
  };
  const { inputs, batch } = description;
  const image = await engine.generate({
      noise: await floats(inputs.noise!),
      encoderHiddenStates: await floats(inputs.encoder_hidden_states!),
      negativeEncoderHiddenStates: await floats(inputs.negative_encoder_hidden_states!),
      nasaScale: await floats(inputs.nasa_scale!),
    batch,
  });
  const expected = await readFile(join(parityDir, description.image.file));
  if (expected.length !== image.length) throw new Error(`parity: PyTorch wrote ${expected.length} pixel bytes, the engine made ${image.length}`);
  let maxAbsDiff = 0;
  let differing = 0;
  for (let i = 0; i < image.length; i++) {
    const diff = Math.abs(image[i]! - expected[i]!);
    if (diff > 0) differing++;
    if (diff > maxAbsDiff) maxAbsDiff = diff;
  }
  return { batch, maxAbsDiff, differing, channels: image.length };
}

async function generatedImages(engine: Engine, manifest: ModelManifest, count: number): Promise<Uint8Array[]> {
  const inputs = generatorInputs(manifest, count, 7);
  const image = await engine.generate({
    noise: inputs.noise,
    encoderHiddenStates: inputs.states,
    negativeEncoderHiddenStates: inputs.negativeStates,
    nasaScale: new Float32Array(count),
    batch: count,
  });
  const size = manifest.image.width * manifest.image.height * 3;
  return Array.from({ length: count }, (_, i) => image.slice(i * size, (i + 1) * size));
}
