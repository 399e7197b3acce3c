// The facade the HTTP layer calls. One generate() reads top to bottom as the pipeline (README.md, Architecture):
// check inputs -> tokenize -> embeddings (cache) -> batch -> generate -> encode image.
import { performance } from 'node:perf_hooks';
import type { BatchReport } from '../batching/micro-batcher.js';
import { EmbeddingCache, type EmbeddingCacheStats } from '../cache/embedding-cache.js';
import type { EngineHealth, EngineOptions } from '../engine/engine.js';
import type { ExecutionProvider, SessionSettings } from '../engine/onnx-runtime.js';
import { errors } from '../errors.js';
import { encodeImage, imageFormats, qualityRange, type ImageFormat } from '../images/image-encoder.js';
import { MAX_SEED, imageSeed, randomSeed, seededNoise } from '../noise/seeded-noise.js';
import { ModelRegistry, type LoadedModel, type ModelRegistryOptions, type RegistryLog } from '../registry/model-registry.js';

export const MAX_IMAGES_PER_REQUEST = 8;

export interface GenerateRequest {
  prompt: string;
  negativePrompt: string;
  /** Default: the model's nasa.default_scale with a negative prompt, 0 without one. */
  negativeScale?: number;
  /** Default: random. Image i uses (seed + i) mod 2^32. */
  seed?: number;
  numImages: number;
  /** Default: the active model. */
  model?: string;
  format: ImageFormat;
  /** Within qualityRange (image-encoder.ts); used by jpeg and webp. */
  quality: number;
  /** Aborting before the request's batch starts drops it from the queue. */
  signal?: AbortSignal;
}

export interface GeneratedImage {
  seed: number;
  contentType: string;
  width: number;
  height: number;
  data: Buffer;
}

export interface GenerateResult {
  model: string;
  images: GeneratedImage[];
  /** The prompt had more tokens than the model's max_length and was cut. */
  truncated: boolean;
  /** The same for the negative prompt. */
  negativeTruncated: boolean;
  /** The scale actually applied (the default filled in). */
  negativeScale: number;
  /** Rows (images) in the generator batch this request ran in. */
  batchSize: number;
  timings: { queueMs: number; encodeMs: number; generateMs: number; imageMs: number; totalMs: number };
}

export interface ModelInfo {
  id: string;
  displayName: string;
  backbone: string;
  method: string;
  parameterization: string;
  active: boolean;
  loaded: boolean;
  image: { width: number; height: number };
  nasa: { defaultScale: number; maxScale: number };
  /** The provider the loaded model runs on; null while it is not loaded. */
  executionProvider: ExecutionProvider | null;
  metrics: Record<string, unknown>;
}

export interface ServiceStats {
  activeModel: string | null;
  ready: boolean;
  models: {
    id: string;
    loaded: boolean;
    executionProvider: ExecutionProvider | null;
    queuedRows: number;
    queuedRequests: number;
    busy: boolean;
    /** Worker restarts of the loaded model's engine; null while it is not loaded. */
    engine: EngineHealth | null;
  }[];
  /** Loaded models whose package on disk has vanished or no longer validates (they keep serving until unloaded). */
  stalePackages: string[];
  cache: EmbeddingCacheStats;
}

export interface BatchEvent extends BatchReport {
  model: string;
}

export interface GenerationServiceOptions {
  modelsDir: string;
  executionProvider: ExecutionProvider;
  intraOpThreads: number;
  interOpThreads?: number;
  executionMode?: SessionSettings['executionMode'];
  intraOpWait?: SessionSettings['intraOpWait'];
  onWorker?: EngineOptions['onWorker'];
  /** Rows (images) per generator batch. */
  maxBatch: number;
  /** Models loaded at once (model-registry.ts); default: no limit. */
  maxLoadedModels?: number;
  /** Rows that may wait per model before requests are refused with SNOOPI_QUEUE_FULL. */
  maxQueueRows: number;
  /** How long a request may wait for its batch to start (SNOOPI_DEADLINE_EXCEEDED); Infinity for none. */
  deadlineMs: number;
  /** Bytes of text embeddings kept. */
  cacheBytes: number;
  /** Default: the best-distilled package (pg-sb, then sb, then teacher-init; ties by id). */
  activeModel?: string;
  /** Check package files' sha256 on load (default true). */
  verifyFiles?: boolean;
  log?: RegistryLog;
}

const silentLog: RegistryLog = { info: () => {}, warn: () => {}, error: () => {} };

export class GenerationService {
  private readonly batchListeners = new Set<(event: BatchEvent) => void>();
  private closed = false;

  private constructor(
    private readonly registry: ModelRegistry,
    private readonly cache: EmbeddingCache,
  ) {}

  /** Scans the models folder and starts loading the active model in the background (see ready()). */
  static async create(options: GenerationServiceOptions): Promise<GenerationService> {
    const log = options.log ?? silentLog;
    const cache = new EmbeddingCache({ maxBytes: options.cacheBytes });
    let service: GenerationService | undefined;
    const engine: ModelRegistryOptions['engine'] = {
      executionProvider: options.executionProvider,
      intraOpThreads: options.intraOpThreads,
      ...(options.interOpThreads !== undefined ? { interOpThreads: options.interOpThreads } : {}),
      ...(options.executionMode !== undefined ? { executionMode: options.executionMode } : {}),
      ...(options.intraOpWait !== undefined ? { intraOpWait: options.intraOpWait } : {}),
      ...(options.onWorker !== undefined ? { onWorker: options.onWorker } : {}),
    };
    const registry = await ModelRegistry.open({
      modelsDir: options.modelsDir,
      engine,
      batching: { maxBatchRows: options.maxBatch, maxQueueRows: options.maxQueueRows, deadlineMs: options.deadlineMs },
      cache,
      ...(options.maxLoadedModels !== undefined ? { maxLoadedModels: options.maxLoadedModels } : {}),
      ...(options.activeModel !== undefined ? { activeModel: options.activeModel } : {}),
      verifyFiles: options.verifyFiles ?? true,
      log,
      onBatch: (model, report) => service?.emitBatch({ model, ...report }),
    });
    service = new GenerationService(registry, cache);
    // The failure is logged by the registry and surfaces again from ready() and generate(), which retry the load.
    service.ready().catch(() => {});
    return service;
  }

  /** Resolves once the active model is loaded and warmed (retrying a failed load). */
  async ready(): Promise<void> {
    const active = this.registry.activeId;
    if (active === undefined) throw new errors.SNOOPI_NOT_READY('no model package is registered');
    await this.registry.load(active);
  }

  isReady(): boolean {
    return !this.closed && this.registry.isReady();
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const arrivedAt = performance.now();
    // 1. Check inputs: those that need no model, then the model, then the scale against the model's range, then
    //    room in the model's queue: a full queue refuses before any work is done for the request.
    if (this.closed) throw new errors.SNOOPI_SHUTTING_DOWN();
    checkRequest(request);
    const { signal } = request;
    signal?.throwIfAborted();
    const lease = await this.registry.acquire(request.model);
    // The deadline counts from here: waiting for a model to load is not waiting in its queue.
    const modelReadyAt = performance.now();
    try {
      const model = lease.model;
      const { manifest, tokenizer, batcher } = model;
      const hasNegativePrompt = request.negativePrompt.trim() !== '';
      const negativeScale = request.negativeScale ?? (hasNegativePrompt ? manifest.nasa.default_scale : 0);
      if (!(negativeScale >= 0 && negativeScale <= manifest.nasa.max_scale)) {
        throw new errors.SNOOPI_SCALE_OUT_OF_RANGE(negativeScale, manifest.nasa.max_scale, model.id);
      }
      batcher.checkRoom(request.numImages);

      // 2. Tokenize.
      const encodeStartedAt = performance.now();
      const prompt = tokenizer.encode(request.prompt);
      const negativePrompt = tokenizer.encode(request.negativePrompt);

      // 3. Embeddings, through the cache.
      const [embedding, negativeEmbedding] = await Promise.all([this.embed(model, prompt.ids), this.embed(model, negativePrompt.ids)]);
      const encodeMs = performance.now() - encodeStartedAt;
      signal?.throwIfAborted();

      // 4. Batch: each image gets its own seeded noise; the request joins the model's queue with all its rows.
      const { channels, height, width } = manifest.latent;
      const noiseSize = channels * height * width;
      const seed = request.seed ?? randomSeed();
      const seeds = Array.from({ length: request.numImages }, (_, index) => imageSeed(seed, index));
      const noise = new Float32Array(seeds.length * noiseSize);
      seeds.forEach((imageSeedValue, index) => seededNoise(imageSeedValue, noiseSize, noise.subarray(index * noiseSize, (index + 1) * noiseSize)));
      const queued = batcher.submit(
        { rows: seeds.length, noise, embedding, negativeEmbedding, nasaScale: negativeScale },
        { rows: seeds.length, arrivedAt: modelReadyAt, ...(signal !== undefined ? { signal } : {}) },
      );

      // 5. Generate: the batcher runs engine.generateRows on the whole batch; this request gets its [rows, H, W, 3].
      const batched = await queued;
      signal?.throwIfAborted();

      // 6. Encode the images.
      const imageStartedAt = performance.now();
      const { width: imageWidth, height: imageHeight } = manifest.image;
      const imageSize = imageWidth * imageHeight * 3;
      const images = await Promise.all(
        seeds.map(async (imageSeedValue, index) => {
          const pixels = batched.result.subarray(index * imageSize, (index + 1) * imageSize);
          const encoded = await encodeImage(pixels, imageWidth, imageHeight, request.format, request.quality);
          return { seed: imageSeedValue, contentType: encoded.contentType, width: imageWidth, height: imageHeight, data: encoded.data };
        }),
      );
      const finishedAt = performance.now();
      return {
        model: model.id,
        images,
        truncated: prompt.truncated,
        negativeTruncated: negativePrompt.truncated,
        negativeScale,
        batchSize: batched.batchRows,
        timings: {
          queueMs: batched.queueMs,
          encodeMs,
          generateMs: batched.runMs,
          imageMs: finishedAt - imageStartedAt,
          totalMs: finishedAt - arrivedAt,
        },
      };
    } finally {
      lease.release();
    }
  }

  listModels(): ModelInfo[] {
    return this.registry.list().map(({ id, manifest }) => {
      const loaded = this.registry.loadedModel(id);
      return {
        id,
        displayName: manifest.display_name,
        backbone: manifest.backbone,
        method: manifest.method,
        parameterization: manifest.parameterization,
        active: id === this.registry.activeId,
        loaded: loaded !== undefined,
        image: { width: manifest.image.width, height: manifest.image.height },
        nasa: { defaultScale: manifest.nasa.default_scale, maxScale: manifest.nasa.max_scale },
        executionProvider: loaded?.engine.provider ?? null,
        metrics: manifest.training.metrics,
      };
    });
  }

  /** Rescans the models folder (for packages exported since start). */
  rescan(): Promise<void> {
    return this.registry.scan();
  }

  /** Makes `id` the default model without dropping in-flight requests (see model-registry.ts). */
  activate(id: string): Promise<void> {
    if (this.closed) return Promise.reject(new errors.SNOOPI_SHUTTING_DOWN());
    return this.registry.activate(id);
  }

  stats(): ServiceStats {
    return {
      activeModel: this.registry.activeId ?? null,
      ready: this.isReady(),
      models: this.registry.list().map(({ id }) => {
        const loaded = this.registry.loadedModel(id);
        return {
          id,
          loaded: loaded !== undefined,
          executionProvider: loaded?.engine.provider ?? null,
          queuedRows: loaded?.batcher.queuedRows ?? 0,
          queuedRequests: loaded?.batcher.queuedRequests ?? 0,
          busy: loaded?.batcher.busy ?? false,
          engine: loaded?.engine.health() ?? null,
        };
      }),
      stalePackages: this.registry.stalePackages(),
      cache: this.cache.stats(),
    };
  }

  /** Calls `listener` after every generator batch of every model (for the batch-size and inference-time metrics). */
  onBatch(listener: (event: BatchEvent) => void): () => void {
    this.batchListeners.add(listener);
    return () => this.batchListeners.delete(listener);
  }

  /** Refuses new requests, lets the ones in flight finish, and releases every model. */
  async close(): Promise<void> {
    this.closed = true;
    await this.registry.close();
  }

  private embed(model: LoadedModel, ids: number[]): Promise<Float32Array> {
    return this.cache
      .get(model.id, ids, () => model.engine.encodeText(BigInt64Array.from(ids, (id) => BigInt(id)), 1))
      .then((lookup) => lookup.embedding);
  }

  private emitBatch(event: BatchEvent): void {
    for (const listener of this.batchListeners) listener(event);
  }
}

/** The checks that need no model; the HTTP schema makes the same ones, this guards other callers. */
function checkRequest(request: GenerateRequest): void {
  const problems: string[] = [];
  if (typeof request.prompt !== 'string' || request.prompt.length === 0) problems.push('prompt must be a non-empty string');
  if (typeof request.negativePrompt !== 'string') problems.push('negativePrompt must be a string');
  if (!Number.isInteger(request.numImages) || request.numImages < 1 || request.numImages > MAX_IMAGES_PER_REQUEST) {
    problems.push(`numImages must be an integer in 1..${MAX_IMAGES_PER_REQUEST}`);
  }
  if (request.seed !== undefined && (!Number.isInteger(request.seed) || request.seed < 0 || request.seed > MAX_SEED)) {
    problems.push(`seed must be an integer in 0..${MAX_SEED}`);
  }
  if (request.negativeScale !== undefined && !Number.isFinite(request.negativeScale)) problems.push('negativeScale must be a finite number');
  if (!imageFormats.includes(request.format)) problems.push(`format must be one of ${imageFormats.join(', ')}`);
  const { minimum, maximum } = qualityRange;
  if (!Number.isInteger(request.quality) || request.quality < minimum || request.quality > maximum) {
    problems.push(`quality must be an integer in ${minimum}..${maximum}`);
  }
  if (problems.length > 0) throw new errors.SNOOPI_VALIDATION(problems.join('; '));
}
