// OpenAI's official client (the `openai` package) pointed at a test server's /v1, as docs/clients.md tells users to.
import assert from 'node:assert/strict';
import OpenAI, { APIError } from 'openai';
import type { ImageGenerateParamsNonStreaming } from 'openai/resources/images';

/** The service's extensions, sent as extra body fields: OpenAI's client passes unknown fields through as they are. */
export type SnoopiImageParams = ImageGenerateParamsNonStreaming & { negative_prompt?: string; negative_scale?: number; seed?: number };
export type SnoopiImage = OpenAI.Images.Image & { seed: number };

/** No retries: a test sees each answer the server gives. */
export const openAIClient = (url: string, apiKey = 'unused: the server has no keys') => new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });

export const generateImages = (client: OpenAI, params: SnoopiImageParams) => client.images.generate(params);

/** The error a call rejects with, checked to be of `type` (one of the client's error classes). */
export async function rejection<T extends APIError>(call: Promise<unknown>, type: abstract new (...args: never[]) => T): Promise<T> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof type, `expected a ${type.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected a ${type.name}`);
}
