// Text embeddings (the text encoder's [L, D] output for one prompt), kept in an LRU bounded by bytes. The key is the
// model id plus the token ids, so spellings that tokenize the same ("A  red Circle", "a red circle") share an entry.
// Concurrent misses on one key run the computation once; a failed computation is forgotten so a retry can happen.
import { LRUCache } from 'lru-cache';

export interface EmbeddingCacheOptions {
  /** Upper bound on the bytes of cached embeddings (keys count too). */
  maxBytes: number;
}

export interface EmbeddingCacheStats {
  /** Lookups answered without computing: from the cache or by joining a computation already running. */
  hits: number;
  /** Lookups that computed the embedding. */
  misses: number;
  bytes: number;
  entries: number;
}

export interface EmbeddingLookup {
  /** Shared with every other user of the entry: read it, never write or transfer it. */
  embedding: Float32Array;
  hit: boolean;
}

export class EmbeddingCache {
  private readonly entries: LRUCache<string, Float32Array>;
  private readonly computing = new Map<string, Promise<Float32Array>>();
  private hits = 0;
  private misses = 0;

  constructor(options: EmbeddingCacheOptions) {
    if (!Number.isInteger(options.maxBytes) || options.maxBytes < 1) {
      throw new RangeError(`maxBytes must be a positive integer, got ${options.maxBytes}`);
    }
    this.entries = new LRUCache({
      maxSize: options.maxBytes,
      sizeCalculation: (embedding, key) => embedding.byteLength + key.length * 2,
    });
  }

  /** Returns the embedding of `tokenIds` under `modelId`, running `compute` only when no one has it or is computing it. */
  async get(modelId: string, tokenIds: readonly number[], compute: () => Promise<Float32Array>): Promise<EmbeddingLookup> {
    const key = `${modelId}\u0000${tokenIds.join(',')}`;
    const cached = this.entries.get(key);
    if (cached !== undefined) {
      this.hits++;
      return { embedding: cached, hit: true };
    }
    const running = this.computing.get(key);
    if (running !== undefined) {
      this.hits++;
      return { embedding: await running, hit: true };
    }
    this.misses++;
    const computation = compute();
    this.computing.set(key, computation);
    try {
      const embedding = await computation;
      this.entries.set(key, embedding);
      return { embedding, hit: false };
    } finally {
      this.computing.delete(key);
    }
  }

  /** Drops every entry of `modelId` (used when a model is unloaded). */
  deleteModel(modelId: string): void {
    const prefix = `${modelId}\u0000`;
    for (const key of [...this.entries.keys()]) {
      if (key.startsWith(prefix)) this.entries.delete(key);
    }
  }

  stats(): EmbeddingCacheStats {
    return { hits: this.hits, misses: this.misses, bytes: this.entries.calculatedSize, entries: this.entries.size };
  }
}
