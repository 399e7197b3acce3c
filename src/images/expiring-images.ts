// Encoded images kept for a while under unguessable names, for the image URLs of an OpenAI-style answer with
// response_format "url". Bounded twice: each image expires `ttlMs` after it is stored, and when the images together
// pass `maxBytes` the least recently used go first. A name is 128 random bits: knowing it is the permission to fetch
// the image, as with the signed URLs of hosted APIs.
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';

export interface StoredImage {
  data: Buffer;
  contentType: string;
}

export interface ExpiringImagesOptions {
  ttlMs: number;
  maxBytes: number;
}

export class ExpiringImages {
  private readonly images: LRUCache<string, StoredImage>;

  constructor(readonly options: ExpiringImagesOptions) {
    this.images = new LRUCache({ ttl: options.ttlMs, maxSize: options.maxBytes, sizeCalculation: (image) => image.data.byteLength });
  }

  /** Stores `image` and returns its name: random, ending in `.<extension>`. */
  put(image: StoredImage, extension: string): string {
    const name = `${randomBytes(16).toString('base64url')}.${extension}`;
    this.images.set(name, image);
    return name;
  }

  /** The image under `name`, until it expires or is dropped for room. */
  get(name: string): StoredImage | undefined {
    return this.images.get(name);
  }
}
