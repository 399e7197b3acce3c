// The registry: model packages under one root folder (a subfolder with model.json is a package; others, like
// models/base, are skipped), loaded on first use and memoised per id (a failed load is forgotten so a retry can
// happen), and the active model that requests without a model id go to.
//
// Requests hold a lease on the model they use from tokenization to the end of generation. Activating another model
// loads and warms it first, then switches; the previous model is retired: requests holding it finish on it (its
// batcher drains), and its engine is closed when the last lease is released. Nothing in flight is dropped.
//
// At most maxLoadedModels models stay loaded: beyond it the least recently leased model that is neither active nor
// being activated is retired the same way, checked when a load completes (the model just loaded is spared, its
// requests are waiting for it) and when a lease ends.
//
// A rescan never takes a loaded model away: when the package of a loaded model has vanished or no longer validates,
// the model keeps serving from memory, is listed as stale (log and /metrics), and is not loaded again once unloaded.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MicroBatcher, type BatchReport } from '../batching/micro-batcher.js';
import { EmbeddingCache } from '../cache/embedding-cache.js';
import { createEngine, type Engine, type EngineLog, type EngineOptions, type GenerationRows } from '../engine/engine.js';
import type { ExecutionProvider, SessionSettings } from '../engine/onnx-runtime.js';
import { errors } from '../errors.js';
import { ClipTokenizer } from '../tokenizer/clip-tokenizer.js';
import { defaultModelId } from './default-model.js';
import { MANIFEST_FILE, loadManifest, type ModelManifest } from './model-manifest.js';

export interface RegistryLog extends EngineLog {
  error(details: object, message: string): void;
}

export interface ModelRegistryOptions {
  modelsDir: string;
  engine: {
    executionProvider: ExecutionProvider;
    intraOpThreads: number;
    interOpThreads?: number;
    executionMode?: SessionSettings['executionMode'];
    intraOpWait?: SessionSettings['intraOpWait'];
    onWorker?: EngineOptions['onWorker'];
  };
  batching: { maxBatchRows: number; maxQueueRows: number; deadlineMs: number };
  /** Shared by all models (its keys carry the model id). */
  cache: EmbeddingCache;
  /** The model requests go to when they name none; default: see default-model.ts. */
  activeModel?: string;
  /** Models loaded at once, the active one included (default: no limit). */
  maxLoadedModels?: number;
  /** Check every package file's size and sha256 when loading (default true). */
  verifyFiles?: boolean;
  log?: RegistryLog;
  onBatch?: (modelId: string, report: BatchReport) => void;
}

/** A package found by scanning: its manifest was read and validated, its graphs not loaded. */
export interface ModelEntry {
  id: string;
  dir: string;
  manifest: ModelManifest;
}

export interface LoadedModel extends ModelEntry {
  tokenizer: ClipTokenizer;
  engine: Engine;
  batcher: MicroBatcher<GenerationRows, Uint8Array>;
}

export interface ModelLease {
  model: LoadedModel;
  /** Ends the lease; calling it again does nothing. */
  release(): void;
}

interface ModelRecord {
  id: string;
  loading: Promise<LoadedModel>;
  loaded: LoadedModel | undefined;
  leases: number;
  /** When it was last leased (a counter: larger is more recent). */
  lastUsed: number;
  retiring: boolean;
  /** Set when closing starts. */
  closed: Promise<void> | undefined;
  /** Resolves when the model is closed, or at once if its load failed. */
  finished: Promise<void>;
  finish: () => void;
}

const silentLog: RegistryLog = { info: () => {}, warn: () => {}, error: () => {} };

/** The packages in `modelsDir` by id: its subfolders with a model.json that validates (others are warned about). */
export async function scanPackages(modelsDir: string, log: Pick<RegistryLog, 'warn'> = silentLog): Promise<Map<string, ModelEntry>> {
  const folders = await readdir(modelsDir, { withFileTypes: true }).catch((error: Error) => {
    throw new Error(`cannot read the models folder ${modelsDir}: ${error.message}`);
  });
  const found = new Map<string, ModelEntry>();
  await Promise.all(
    folders
      .filter((folder) => folder.isDirectory())
      .map(async (folder) => {
        const dir = join(modelsDir, folder.name);
        const isPackage = await stat(join(dir, MANIFEST_FILE)).then(
          (info) => info.isFile(),
          () => false,
        );
        if (!isPackage) return;
        try {
          const manifest = await loadManifest(dir, folder.name, { verifyFiles: false });
          found.set(manifest.id, { id: manifest.id, dir, manifest });
        } catch (error) {
          log.warn({ dir, error: (error as Error).message }, 'skipping an invalid model package');
        }
      }),
  );
  return found;
}

export class ModelRegistry {
  private readonly options: ModelRegistryOptions;
  private readonly log: RegistryLog;
  private entries = new Map<string, ModelEntry>();
  /** Ids of loaded models whose package on disk vanished or stopped validating since they were loaded. */
  private stale = new Set<string>();
  private readonly records = new Map<string, ModelRecord>();
  private uses = 0;
  private active: string | undefined;
  private scanning: Promise<void> | undefined;
  private activating: Promise<void> = Promise.resolve();
  private activatingId: string | undefined;
  private closing = false;

  private constructor(options: ModelRegistryOptions) {
    this.options = options;
    this.log = options.log ?? silentLog;
  }

  /** Scans the root folder and picks the active model; loads nothing. */
  static async open(options: ModelRegistryOptions): Promise<ModelRegistry> {
    const registry = new ModelRegistry(options);
    await registry.scan();
    if (options.activeModel !== undefined && !registry.entries.has(options.activeModel)) throw registry.notFound(options.activeModel);
    registry.active = options.activeModel ?? defaultModelId(registry.list().map((entry) => entry.manifest));
    if (registry.active === undefined) registry.log.warn({ modelsDir: options.modelsDir }, 'no model package found');
    return registry;
  }

  /** Reads the root folder again (a trainer may have exported a package); concurrent calls share one scan. */
  scan(): Promise<void> {
    this.scanning ??= this.readPackages().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  get activeId(): string | undefined {
    return this.active;
  }

  /** Every package found, sorted by id. */
  list(): ModelEntry[] {
    return [...this.entries.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Ids of loaded models whose package on disk has vanished or no longer validates, sorted. */
  stalePackages(): string[] {
    return [...this.stale].sort();
  }

  /** The loaded model of `id`, if it is loaded now. */
  loadedModel(id: string): LoadedModel | undefined {
    const record = this.records.get(id);
    return record?.closed === undefined ? record?.loaded : undefined;
  }

  /** True once the active model is loaded and warmed. */
  isReady(): boolean {
    return !this.closing && this.active !== undefined && this.loadedModel(this.active) !== undefined;
  }

  /** Loads (tokenizer + graphs + warmup + batcher) `id`, once; a failed load is forgotten so a later call retries. */
  async load(id: string): Promise<LoadedModel> {
    if (this.closing) throw new errors.SNOOPI_SHUTTING_DOWN();
    return this.recordOf(await this.entryOf(id)).loading;
  }

  /** Leases the model `id` (default: the active one) for one request; see the header comment. */
  async acquire(id: string | undefined = this.active): Promise<ModelLease> {
    if (id === undefined) throw new errors.SNOOPI_NOT_READY(`no model package in ${this.options.modelsDir}`);
    for (;;) {
      if (this.closing) throw new errors.SNOOPI_SHUTTING_DOWN();
      const record = this.recordOf(await this.entryOf(id));
      const model = await record.loading;
      // The record may have been retired and closed while this request waited for it: take the fresh one.
      if (record.closed !== undefined || this.records.get(id) !== record) continue;
      record.leases++;
      record.lastUsed = ++this.uses;
      let released = false;
      return {
        model,
        release: () => {
          if (released) return;
          released = true;
          record.leases--;
          this.closeIfRetired(record);
          this.evictBeyondLimit();
        },
      };
    }
  }

  /** Makes `id` the active model once it is loaded and warmed; the previous one is retired. */
  activate(id: string): Promise<void> {
    const activation = this.activating.then(async () => {
      this.activatingId = id;
      try {
        await this.load(id);
      } finally {
        this.activatingId = undefined;
      }
      const previous = this.active;
      this.active = id;
      const record = this.records.get(id);
      if (record !== undefined) record.retiring = false;
      this.log.info({ model: id, previous }, 'model activated');
      if (previous !== undefined && previous !== id) {
        const old = this.records.get(previous);
        if (old !== undefined) {
          old.retiring = true;
          this.closeIfRetired(old);
        }
      }
    });
    this.activating = activation.catch(() => {});
    return activation;
  }

  /** Refuses new leases, lets leased requests finish, then closes every loaded model. */
  async close(): Promise<void> {
    this.closing = true;
    await this.activating;
    const records = [...this.records.values()];
    await Promise.all(
      records.map(async (record) => {
        record.retiring = true;
        await record.loading.catch(() => {});
        this.closeIfRetired(record);
      }),
    );
    await Promise.all(records.map((record) => record.finished));
  }

  private async readPackages(): Promise<void> {
    const found = await scanPackages(this.options.modelsDir, this.log);
    const stale = new Set<string>();
    for (const [id, record] of this.records) {
      const entry = this.entries.get(id);
      if (found.has(id) || record.closed !== undefined || entry === undefined) continue;
      found.set(id, entry);
      stale.add(id);
      if (!this.stale.has(id)) {
        this.log.warn({ model: id, dir: entry.dir }, 'the package of a loaded model has vanished or no longer validates; the loaded model keeps serving');
      }
    }
    this.entries = found;
    this.stale = stale;
  }

  private async entryOf(id: string): Promise<ModelEntry> {
    if (!this.entries.has(id)) await this.scan();
    const entry = this.entries.get(id);
    if (entry === undefined) throw this.notFound(id);
    return entry;
  }

  private notFound(id: string): Error {
    return new errors.SNOOPI_MODEL_NOT_FOUND(id, this.list().map((entry) => entry.id).join(', ') || '(none)');
  }

  private recordOf(entry: ModelEntry): ModelRecord {
    const existing = this.records.get(entry.id);
    if (existing !== undefined && existing.closed === undefined) return existing;
    let finish = () => {};
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const record: ModelRecord = {
      id: entry.id,
      loading: this.loadModel(entry),
      loaded: undefined,
      leases: 0,
      lastUsed: ++this.uses,
      retiring: false,
      closed: undefined,
      finished,
      finish,
    };
    this.records.set(entry.id, record);
    record.loading.then(
      (model) => {
        record.loaded = model;
        this.closeIfRetired(record);
        this.evictBeyondLimit(record);
      },
      (error: Error) => {
        if (this.records.get(entry.id) === record) this.records.delete(entry.id);
        record.finish();
        this.log.error({ model: entry.id, error: error.message }, 'model load failed');
      },
    );
    return record;
  }

  private async loadModel(entry: ModelEntry): Promise<LoadedModel> {
    const { dir, id } = entry;
    let engine: Engine | undefined;
    try {
      const manifest = await loadManifest(dir, id, { verifyFiles: this.options.verifyFiles ?? true });
      const { text } = manifest;
      const [tokenizer, createdEngine] = await Promise.all([
        ClipTokenizer.fromDir(join(dir, 'tokenizer'), { maxLength: text.max_length, padTokenId: text.pad_token_id }),
        createEngine({ packageDir: dir, manifest, ...this.options.engine, log: this.log }),
      ]);
      engine = createdEngine;
      if (tokenizer.bosTokenId !== text.bos_token_id || tokenizer.eosTokenId !== text.eos_token_id) {
        throw new Error(
          `the tokenizer's bos/eos ids ${tokenizer.bosTokenId}/${tokenizer.eosTokenId} differ from model.json's ${text.bos_token_id}/${text.eos_token_id}`,
        );
      }
      await engine.warmup();
      const batcher = new MicroBatcher<GenerationRows, Uint8Array>({
        name: id,
        ...this.options.batching,
        runBatch: (requests) => createdEngine.generateRows(requests),
        onBatch: (report) => this.options.onBatch?.(id, report),
      });
      return { id, dir, manifest, tokenizer, engine, batcher };
    } catch (error) {
      await engine?.close();
      if ((error as { code?: string }).code === 'SNOOPI_MODEL_LOAD_FAILED') throw error;
      throw new errors.SNOOPI_MODEL_LOAD_FAILED(id, (error as Error).message);
    }
  }

  /** Retires the least recently leased models, but the active one, the one being activated and `spared`, while more
   * than maxLoadedModels are loaded. */
  private evictBeyondLimit(spared?: ModelRecord): void {
    const limit = this.options.maxLoadedModels ?? Infinity;
    const kept = [...this.records.values()].filter((record) => record.loaded !== undefined && !record.retiring);
    const evictable = kept
      .filter((record) => record !== spared && record.id !== this.active && record.id !== this.activatingId)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const record of evictable.slice(0, Math.max(0, kept.length - limit))) {
      this.log.info({ model: record.id, maxLoadedModels: limit }, 'evicting the least recently used model');
      record.retiring = true;
      this.closeIfRetired(record);
    }
  }

  /** Closes a retiring model once no request holds it. */
  private closeIfRetired(record: ModelRecord): void {
    if (!record.retiring || record.leases > 0 || record.closed !== undefined || record.loaded === undefined) return;
    const model = record.loaded;
    if (this.records.get(record.id) === record) this.records.delete(record.id);
    record.closed = (async () => {
      await model.batcher.close();
      await model.engine.close();
      this.options.cache.deleteModel(record.id);
      if (this.stale.delete(record.id)) this.entries.delete(record.id);
      this.log.info({ model: record.id }, 'model unloaded');
    })()
      .catch((error: Error) => this.log.error({ model: record.id, error: error.message }, 'closing a model failed'))
      .finally(record.finish);
  }
}
