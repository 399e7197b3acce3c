// The engine of one model package, seen from the main thread. Each graph (text encoder, generator) lives in its own
// worker thread (engine-worker.ts): they load in parallel, and a prompt's text encoding never waits behind a
// generator batch. Tensors cross the thread boundary by transferring their buffers, without copies; a caller hands
// over the arrays it passes in and must not use them afterwards.
//
// A worker that ends (an uncaught error, an exit) fails the calls handed to it with SNOOPI_ENGINE_FAILED and is
// started again at once; calls made meanwhile wait for the new one. health() says what happened. (A crash inside
// onnxruntime's native code ends the whole process, not only its thread.)
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { errors } from '../errors.js';
import type { ModelManifest } from '../registry/model-manifest.js';
import type { ExecutionProvider, PlainTensor, ProviderFallback, SessionSettings, TensorSpec } from './onnx-runtime.js';
import type { WorkerReply, WorkerRequest, WorkerSetup } from './engine-worker.js';

/** The subset of a pino logger the engine uses. */
export interface EngineLog {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface EngineOptions {
  packageDir: string;
  manifest: ModelManifest;
  executionProvider: ExecutionProvider;
  intraOpThreads: number;
  interOpThreads?: number;
  executionMode?: SessionSettings['executionMode'];
  intraOpWait?: SessionSettings['intraOpWait'];
  log?: EngineLog;
  /** Called with each worker thread started (fault-injection tests end one the way a crash would). */
  onWorker?: (worker: Worker, graph: string) => void;
}

export interface EngineHealth {
  /** Worker restarts since the engine was created. */
  restarts: number;
  /** A worker died and its replacement is loading. */
  restarting: boolean;
  /** Why the last worker died; null if none has. */
  lastFailure: string | null;
}

export interface GenerateInput {
  /** [B, C, h, w] */
  noise: Float32Array;
  /** [B, L, D] */
  encoderHiddenStates: Float32Array;
  /** [B, L, D] */
  negativeEncoderHiddenStates: Float32Array;
  /** [B]; 0 disables NASA for that row. */
  nasaScale: Float32Array;
  batch: number;
}

/** One request's rows for generateRows(): its own noise, and embeddings shared by all of its rows. */
export interface GenerationRows {
  rows: number;
  /** [rows, C, h, w] */
  noise: Float32Array;
  /** [L, D]; only read. */
  embedding: Float32Array;
  /** [L, D]; only read. */
  negativeEmbedding: Float32Array;
  nasaScale: number;
}

export interface Engine {
  readonly modelId: string;
  /** The provider the generator runs on (the one that matters for speed). */
  readonly provider: ExecutionProvider;
  readonly providers: { textEncoder: ExecutionProvider; generator: ExecutionProvider };
  /** ids: [B, L] -> last_hidden_state [B, L, D] */
  encodeText(ids: BigInt64Array, batch: number): Promise<Float32Array>;
  /** -> image [B, H, W, 3] */
  generate(input: GenerateInput): Promise<Uint8Array>;
  /** Packs several requests into one generator call; returns each request's [rows, H, W, 3] pixels (views). */
  generateRows(requests: readonly GenerationRows[]): Promise<Uint8Array[]>;
  /** Runs each graph once at batch 1 so the first request does not pay for lazy initialisation. */
  warmup(): Promise<void>;
  health(): EngineHealth;
  /** Releases both sessions and ends the workers; idempotent. */
  close(): Promise<void>;
}

const TEXT_ENCODER_FILE = 'text_encoder.onnx';
const GENERATOR_FILE = 'generator.onnx';

const silentLog: EngineLog = { info: () => {}, warn: () => {} };

/** The buffer of `array` if the array spans all of it (so it can be transferred), else a copy's. */
function ownBuffer<T extends Float32Array | BigInt64Array | Uint8Array>(array: T): T {
  return array.byteOffset === 0 && array.byteLength === array.buffer.byteLength ? array : (array.slice() as T);
}

/** One graph in one worker thread. */
class GraphWorker {
  private readonly pending = new Map<number, { resolve: (outputs: Record<string, PlainTensor>) => void; reject: (error: Error) => void }>();
  private nextId = 0;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  /** Called once when the worker dies (not when it is closed). */
  onDeath: (message: string) => void = () => {};

  private constructor(
    readonly label: string,
    private readonly worker: Worker,
    readonly provider: ExecutionProvider,
    readonly fallbacks: ProviderFallback[],
    readonly inputs: TensorSpec[],
    readonly outputs: TensorSpec[],
  ) {
    worker.on('message', (reply: WorkerReply) => {
      if (reply.kind !== 'result' && reply.kind !== 'error') return;
      const waiting = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (reply.kind === 'result') waiting?.resolve(reply.outputs);
      else waiting?.reject(new errors.SNOOPI_ENGINE_FAILED(`${label}: ${reply.message}`));
    });
    worker.on('error', (error) => this.fail(`${label}: the worker crashed: ${error.message}`));
    worker.on('exit', (code) => {
      if (this.closing === undefined) this.fail(`${label}: the worker exited with code ${code}`);
    });
  }

  static start(path: string, label: string, settings: Partial<SessionSettings>, onWorker?: EngineOptions['onWorker']): Promise<GraphWorker> {
    const setup: WorkerSetup = { path, label, settings };
    const worker = new Worker(new URL('./engine-worker.js', import.meta.url), { workerData: setup });
    onWorker?.(worker, label);
    return new Promise((resolve, reject) => {
      const onExit = (code: number) => reject(new Error(`the worker exited with code ${code} while loading`));
      const onError = (error: Error) => reject(error);
      worker.once('exit', onExit);
      worker.once('error', onError);
      worker.once('message', (reply: WorkerReply) => {
        worker.off('exit', onExit);
        worker.off('error', onError);
        if (reply.kind === 'ready') {
          resolve(new GraphWorker(label, worker, reply.provider, reply.fallbacks, reply.inputs, reply.outputs));
        } else {
          void worker.terminate();
          reject(new Error(reply.kind === 'failed' ? reply.message : `unexpected first message ${reply.kind}`));
        }
      });
    });
  }

  run(feeds: Record<string, PlainTensor>): Promise<Record<string, PlainTensor>> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing !== undefined) return Promise.reject(new errors.SNOOPI_ENGINE_FAILED(`${this.label}: the engine is closed`));
    const id = this.nextId++;
    // A set: two feeds may be the same array, and a buffer can be transferred only once.
    const transfer = [...new Set(Object.values(feeds).map((feed) => feed.data.buffer as ArrayBuffer))];
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: WorkerRequest = { kind: 'run', id, feeds };
      this.worker.postMessage(request, transfer);
    });
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (this.failure !== undefined) {
        void this.worker.terminate().then(() => resolve());
        return;
      }
      this.worker.on('message', (reply: WorkerReply) => {
        if (reply.kind === 'closed') void this.worker.terminate().then(() => resolve());
      });
      this.worker.once('exit', () => resolve());
      const request: WorkerRequest = { kind: 'close' };
      this.worker.postMessage(request);
    });
    return this.closing;
  }

  private fail(message: string): void {
    if (this.failure !== undefined) return;
    this.failure = new errors.SNOOPI_ENGINE_FAILED(message);
    for (const waiting of this.pending.values()) waiting.reject(this.failure);
    this.pending.clear();
    this.onDeath(message);
  }
}

/** A graph whose worker is started again when it dies; runs made while it restarts wait for the new worker. A
 * restart that fails fails those runs, and the next run tries again. */
class RestartingGraph {
  private current: Promise<GraphWorker>;
  private restarting = false;
  private restartFailed = false;
  private closed = false;

  constructor(
    first: GraphWorker,
    private readonly start: () => Promise<GraphWorker>,
    private readonly events: { died(message: string): void; restarted(error: Error | undefined): void },
  ) {
    this.current = Promise.resolve(this.watch(first));
  }

  get isRestarting(): boolean {
    return this.restarting;
  }

  async run(feeds: Record<string, PlainTensor>): Promise<Record<string, PlainTensor>> {
    if (this.restartFailed && !this.closed) this.restart();
    return (await this.current).run(feeds);
  }

  async close(): Promise<void> {
    this.closed = true;
    const graph = await this.current.catch(() => undefined);
    await graph?.close();
  }

  private watch(graph: GraphWorker): GraphWorker {
    graph.onDeath = (message) => {
      if (this.closed) return;
      this.events.died(message);
      this.restart();
    };
    return graph;
  }

  private restart(): void {
    this.restarting = true;
    this.restartFailed = false;
    this.current = this.start().then(
      (next) => {
        this.restarting = false;
        this.events.restarted(undefined);
        return this.watch(next);
      },
      (error: Error) => {
        this.restarting = false;
        this.restartFailed = true;
        this.events.restarted(error);
        throw new errors.SNOOPI_ENGINE_FAILED(`restarting a worker failed: ${error.message}`);
      },
    );
    this.current.catch(() => {});
  }
}

/** Problems with a graph's declared inputs and outputs against what the manifest implies; [] when they agree. */
function signatureProblems(graph: GraphWorker, inputs: TensorSpec[], outputs: TensorSpec[]): string[] {
  const problems: string[] = [];
  const compare = (kind: string, declared: TensorSpec[], expected: TensorSpec[]) => {
    for (const want of expected) {
      const got = declared.find((spec) => spec.name === want.name);
      const wanted = `${want.type} [${want.dims.join(',')}]`;
      if (got === undefined) {
        problems.push(`${graph.label}: no ${kind} ${want.name} (${wanted})`);
        continue;
      }
      const fixedDimsDiffer =
        got.dims.length !== want.dims.length ||
        got.dims.some((dim, axis) => typeof dim === 'number' && typeof want.dims[axis] === 'number' && dim !== want.dims[axis]);
      if (got.type !== want.type || fixedDimsDiffer) {
        problems.push(`${graph.label}: ${kind} ${want.name} is ${got.type} [${got.dims.join(',')}], the manifest implies ${wanted}`);
      }
    }
    for (const spec of declared) {
      if (!expected.some((want) => want.name === spec.name)) problems.push(`${graph.label}: unexpected ${kind} ${spec.name}`);
    }
  };
  compare('input', graph.inputs, inputs);
  compare('output', graph.outputs, outputs);
  return problems;
}

export async function createEngine(options: EngineOptions): Promise<Engine> {
  const { manifest, packageDir, log = silentLog } = options;
  const settings: Partial<SessionSettings> = { executionProvider: options.executionProvider, intraOpThreads: options.intraOpThreads };
  if (options.interOpThreads !== undefined) settings.interOpThreads = options.interOpThreads;
  if (options.executionMode !== undefined) settings.executionMode = options.executionMode;
  if (options.intraOpWait !== undefined) settings.intraOpWait = options.intraOpWait;

  // The text encoder's threads always sleep when idle: its calls are short, many small operators, and run beside
  // generator batches, where threads spinning between its operators take the generator's cores (measured with
  // all-unique prompts: README.md, Performance).
  const textEncoderSettings: Partial<SessionSettings> = { ...settings, intraOpWait: 'block' };

  const startedAt = performance.now();
  const startGraph = (file: string, graphSettings: Partial<SessionSettings>) => () =>
    GraphWorker.start(`${packageDir}/${file}`, file, graphSettings, options.onWorker);
  const startTextEncoder = startGraph(TEXT_ENCODER_FILE, textEncoderSettings);
  const startGenerator = startGraph(GENERATOR_FILE, settings);
  const started = await Promise.allSettled([startTextEncoder(), startGenerator()]);
  const [textEncoderStart, generatorStart] = started;
  if (textEncoderStart.status === 'rejected' || generatorStart.status === 'rejected') {
    await Promise.all(started.map((start) => (start.status === 'fulfilled' ? start.value.close() : undefined)));
    const reasons = started.flatMap((start, index) =>
      start.status === 'rejected' ? [`${[TEXT_ENCODER_FILE, GENERATOR_FILE][index]}: ${(start.reason as Error).message}`] : [],
    );
    throw new errors.SNOOPI_MODEL_LOAD_FAILED(manifest.id, reasons.join('; '));
  }
  const firstTextEncoder = textEncoderStart.value;
  const firstGenerator = generatorStart.value;

  const { max_length: L, hidden_size: D } = manifest.text;
  const { channels: C, height: h, width: w } = manifest.latent;
  const { height: H, width: W } = manifest.image;
  const problems = [
    ...signatureProblems(
      firstTextEncoder,
      [{ name: 'input_ids', type: 'int64', dims: ['B', L] }],
      [{ name: 'last_hidden_state', type: 'float32', dims: ['B', L, D] }],
    ),
    ...signatureProblems(
      firstGenerator,
      [
        { name: 'noise', type: 'float32', dims: ['B', C, h, w] },
        { name: 'encoder_hidden_states', type: 'float32', dims: ['B', L, D] },
        { name: 'negative_encoder_hidden_states', type: 'float32', dims: ['B', L, D] },
        { name: 'nasa_scale', type: 'float32', dims: ['B'] },
      ],
      [{ name: 'image', type: 'uint8', dims: ['B', H, W, 3] }],
    ),
  ];
  if (problems.length > 0) {
    await Promise.all([firstTextEncoder.close(), firstGenerator.close()]);
    throw new errors.SNOOPI_MODEL_LOAD_FAILED(manifest.id, problems.join('; '));
  }
  for (const graph of [firstTextEncoder, firstGenerator]) {
    for (const fallback of graph.fallbacks) {
      log.warn(
        { model: manifest.id, graph: graph.label, requested: fallback.provider, provider: graph.provider, reason: fallback.reason },
        `execution provider ${fallback.provider} is unavailable; ${graph.label} runs on ${graph.provider}`,
      );
    }
  }
  log.info({ model: manifest.id, provider: firstGenerator.provider, loadMs: Math.round(performance.now() - startedAt) }, 'model graphs loaded');

  const deaths: Omit<EngineHealth, 'restarting'> = { restarts: 0, lastFailure: null };
  const supervise = (first: GraphWorker, start: () => Promise<GraphWorker>) =>
    new RestartingGraph(first, start, {
      died(message) {
        deaths.restarts++;
        deaths.lastFailure = message;
        log.warn({ model: manifest.id, graph: first.label, reason: message }, 'an engine worker died; starting it again');
      },
      restarted(error) {
        if (error === undefined) log.info({ model: manifest.id, graph: first.label }, 'engine worker restarted');
        else log.warn({ model: manifest.id, graph: first.label, error: error.message }, 'restarting an engine worker failed');
      },
    });
  const textEncoder = supervise(firstTextEncoder, startTextEncoder);
  const generator = supervise(firstGenerator, startGenerator);

  const expectDims = (label: string, tensor: PlainTensor | undefined, dims: number[]): void => {
    if (tensor === undefined || tensor.dims.length !== dims.length || tensor.dims.some((size, axis) => size !== dims[axis])) {
      throw new errors.SNOOPI_ENGINE_FAILED(`${label}: expected an output of dims [${dims.join(',')}], got [${tensor?.dims.join(',') ?? 'nothing'}]`);
    }
  };

  const engine: Engine = {
    modelId: manifest.id,
    provider: firstGenerator.provider,
    providers: { textEncoder: firstTextEncoder.provider, generator: firstGenerator.provider },

    async encodeText(ids, batch) {
      const outputs = await textEncoder.run({ input_ids: { type: 'int64', data: ownBuffer(ids), dims: [batch, L] } });
      const hidden = outputs.last_hidden_state;
      expectDims(TEXT_ENCODER_FILE, hidden, [batch, L, D]);
      return hidden!.data as Float32Array;
    },

    async generate({ noise, encoderHiddenStates, negativeEncoderHiddenStates, nasaScale, batch }) {
      const outputs = await generator.run({
        noise: { type: 'float32', data: ownBuffer(noise), dims: [batch, C, h, w] },
        encoder_hidden_states: { type: 'float32', data: ownBuffer(encoderHiddenStates), dims: [batch, L, D] },
        negative_encoder_hidden_states: { type: 'float32', data: ownBuffer(negativeEncoderHiddenStates), dims: [batch, L, D] },
        nasa_scale: { type: 'float32', data: ownBuffer(nasaScale), dims: [batch] },
      });
      const image = outputs.image;
      expectDims(GENERATOR_FILE, image, [batch, H, W, 3]);
      return image!.data as Uint8Array;
    },

    async generateRows(requests) {
      const noiseSize = C * h * w;
      const embeddingSize = L * D;
      const batch = requests.reduce((rows, request) => rows + request.rows, 0);
      const noise = new Float32Array(batch * noiseSize);
      const encoderHiddenStates = new Float32Array(batch * embeddingSize);
      const negativeEncoderHiddenStates = new Float32Array(batch * embeddingSize);
      const nasaScale = new Float32Array(batch);
      let row = 0;
      for (const request of requests) {
        if (request.noise.length !== request.rows * noiseSize) {
          throw new errors.SNOOPI_ENGINE_FAILED(`noise holds ${request.noise.length} values, ${request.rows} rows need ${request.rows * noiseSize}`);
        }
        if (request.embedding.length !== embeddingSize || request.negativeEmbedding.length !== embeddingSize) {
          throw new errors.SNOOPI_ENGINE_FAILED(`embeddings must hold L*D = ${embeddingSize} values`);
        }
        noise.set(request.noise, row * noiseSize);
        for (let i = 0; i < request.rows; i++, row++) {
          encoderHiddenStates.set(request.embedding, row * embeddingSize);
          negativeEncoderHiddenStates.set(request.negativeEmbedding, row * embeddingSize);
          nasaScale[row] = request.nasaScale;
        }
      }
      const image = await engine.generate({ noise, encoderHiddenStates, negativeEncoderHiddenStates, nasaScale, batch });
      const imageSize = H * W * 3;
      let offset = 0;
      return requests.map((request) => {
        const pixels = image.subarray(offset, offset + request.rows * imageSize);
        offset += request.rows * imageSize;
        return pixels;
      });
    },

    async warmup() {
      const ids = new BigInt64Array(L).fill(BigInt(manifest.text.pad_token_id));
      ids[0] = BigInt(manifest.text.bos_token_id);
      ids[1] = BigInt(manifest.text.eos_token_id);
      const embedding = await engine.encodeText(ids, 1);
      await engine.generate({
        noise: new Float32Array(C * h * w),
        encoderHiddenStates: embedding.slice(),
        negativeEncoderHiddenStates: embedding,
        nasaScale: new Float32Array(1),
        batch: 1,
      });
    },

    health() {
      return { ...deaths, restarting: textEncoder.isRestarting || generator.isRestarting };
    },

    async close() {
      await Promise.all([textEncoder.close(), generator.close()]);
    },
  };
  return engine;
}
