// The API keys of SNOOPI_API_KEYS: a text file with one key per line, holding the key's name and the sha256 of the
// key, never the key itself, with optional limits of its own:
//
//   # name   sha256 of the key (hex)                                          optional limits
//   alice    457c6a6848a0bbde7277ab01d5b82d9dbd88e96ca457819589954be69b69b1ad
//   batch    6bda5f86802796b689d499478ad36c33a4d761ac464c0bfe6bd23a72fa675d86 requests_per_minute=600 images_per_minute=4800
//
// The name identifies the key in logs and metrics. A presented key is looked up by its digest, so the file never
// needs to hold a secret. Anything malformed stops the start with the file and line.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

export interface ApiKey {
  /** Shown in metrics and logs in place of the key. */
  name: string;
  requestsPerMinute: number;
  imagesPerMinute: number;
}

export type KeyLimits = Pick<ApiKey, 'requestsPerMinute' | 'imagesPerMinute'>;

export class ApiKeyFileError extends Error {
  override name = 'ApiKeyFileError';
}

const namePattern = /^[A-Za-z0-9._-]{1,64}$/;
const digestPattern = /^[0-9a-f]{64}$/;
const limitFields: Record<string, keyof KeyLimits> = { requests_per_minute: 'requestsPerMinute', images_per_minute: 'imagesPerMinute' };

/** The hex sha256 of a key, as the key file holds it. */
export const apiKeyDigest = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex');

export class ApiKeys {
  private constructor(private readonly byDigest: ReadonlyMap<string, ApiKey>) {}

  /** Parses a key file's text; `defaults` are the limits of keys whose line sets none. */
  static parse(text: string, defaults: KeyLimits, source = 'the API key file'): ApiKeys {
    const byDigest = new Map<string, ApiKey>();
    const names = new Set<string>();
    text.split('\n').forEach((rawLine, index) => {
      const line = rawLine.replace(/#.*/, '').trim();
      if (line === '') return;
      const fail = (problem: string): never => {
        throw new ApiKeyFileError(`${source}, line ${index + 1}: ${problem}`);
      };
      const [name = '', digest = '', ...limits] = line.split(/\s+/);
      if (!namePattern.test(name)) fail(`the name ${JSON.stringify(name)} must be 1-64 letters, digits, '.', '_' or '-'`);
      if (!digestPattern.test(digest)) fail(`expected the key's sha256 as 64 lowercase hex digits after the name, got ${JSON.stringify(digest)}`);
      if (names.has(name)) fail(`the name ${name} is used twice`);
      if (byDigest.has(digest)) fail(`the key of ${name} is also ${byDigest.get(digest)!.name}'s`);
      const key: ApiKey = { name, ...defaults };
      for (const limit of limits) {
        const [field = '', value = ''] = limit.split('=');
        const property = limitFields[field];
        if (property === undefined) {
          fail(`unknown field ${JSON.stringify(limit)}; known: ${Object.keys(limitFields).map((known) => `${known}=N`).join(', ')}`);
        }
        if (!/^[1-9]\d{0,8}$/.test(value)) fail(`${field} must be a whole number from 1, got ${JSON.stringify(value)}`);
        key[property!] = Number(value);
      }
      names.add(name);
      byDigest.set(digest, key);
    });
    if (byDigest.size === 0) throw new ApiKeyFileError(`${source} holds no key: every request would be refused`);
    return new ApiKeys(byDigest);
  }

  static async load(path: string, defaults: KeyLimits): Promise<ApiKeys> {
    const text = await readFile(path, 'utf8').catch((error: Error) => {
      throw new ApiKeyFileError(`cannot read the API key file: ${error.message}`);
    });
    return ApiKeys.parse(text, defaults, path);
  }

  /** The key whose digest matches `presented`, if any. */
  find(presented: string): ApiKey | undefined {
    return this.byDigest.get(apiKeyDigest(presented));
  }

  /** Every key, in file order. */
  list(): ApiKey[] {
    return [...this.byDigest.values()];
  }
}
