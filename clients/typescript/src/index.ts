// @snoopi/client: a typed client of the snoopi-serve HTTP API. The types are generated from openapi/openapi.json
// (src/schema.d.ts, `npm run sdk`); the requests go through openapi-fetch. Each method resolves to the response body
// of a 2xx answer and rejects with a SnoopiError that carries the API's error body ({ statusCode, code, error,
// message }) otherwise. `http` is the underlying openapi-fetch client, typed by the same schema, for anything else.
import createFetchClient from 'openapi-fetch';
import type { components, paths } from './schema.js';

export type { components, paths } from './schema.js';

type JsonBody<Response> = Response extends { content: { 'application/json': infer Body } } ? Body : never;

export type ErrorBody = components['schemas']['ErrorBody'];
export type GenerateRequest = paths['/generate']['post']['requestBody']['content']['application/json'];
export type GenerateResponse = JsonBody<paths['/generate']['post']['responses'][200]>;
export type ImageFormat = NonNullable<GenerateRequest['format']>;
export type ModelList = JsonBody<paths['/models']['get']['responses'][200]>;
export type Model = ModelList['data'][number];
export type Health = JsonBody<paths['/healthz']['get']['responses'][200]>;
export type Readiness = JsonBody<paths['/readyz']['get']['responses'][200]>;

/** A non-2xx answer. `code` is the API's stable error code (docs/errors.md), e.g. SNOOPI_QUEUE_FULL. */
export class SnoopiError extends Error {
  override name = 'SnoopiError';
  readonly status: number;
  readonly code: string;
  /** The error body, when the answer had one (a proxy in between may answer without it). */
  readonly body: ErrorBody | undefined;
  /** Seconds to wait before retrying, from Retry-After (429 and 503 answers). */
  readonly retryAfter: number | undefined;

  constructor(response: Response, body: unknown) {
    const errorBody = isErrorBody(body) ? body : undefined;
    super(errorBody?.message ?? `HTTP ${response.status} ${response.statusText}`);
    this.status = response.status;
    this.code = errorBody?.code ?? `HTTP_${response.status}`;
    this.body = errorBody;
    const retryAfter = response.headers.get('retry-after');
    this.retryAfter = retryAfter === null || !/^\d+$/.test(retryAfter) ? undefined : Number(retryAfter);
  }
}

function isErrorBody(body: unknown): body is ErrorBody {
  return typeof body === 'object' && body !== null && typeof (body as ErrorBody).code === 'string' && typeof (body as ErrorBody).message === 'string';
}

export interface ClientOptions {
  /** Bearer token of the admin routes (the server's SNOOPI_ADMIN_TOKEN). */
  token?: string;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
  /** A fetch implementation (default: the global fetch). */
  fetch?: (request: Request) => Promise<Response>;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** One image as raw bytes (generateImage). */
export interface GeneratedImage {
  bytes: Uint8Array;
  contentType: string;
  seed: number;
  model: string;
  /** The Server-Timing header: queue, encode, generate, image and total durations. */
  serverTiming: string | null;
}

export function createClient(baseUrl: string, options: ClientOptions = {}) {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const http = createFetchClient<paths>({ baseUrl, headers, ...(options.fetch === undefined ? {} : { fetch: options.fetch }) });

  async function unwrap<Data>(call: Promise<{ data?: Data; error?: unknown; response: Response }>): Promise<Data> {
    const { data, error, response } = await call;
    if (!response.ok) throw new SnoopiError(response, error);
    return data as Data;
  }

  return {
    http,

    /** POST /generate: images as base64 in JSON, with their seeds and the request's timings. */
    generate: (body: GenerateRequest, init: RequestOptions = {}) => unwrap(http.POST('/generate', { body, ...init })),

    /** POST /generate with Accept: image/<format>: one image as raw bytes, seed and model from the headers. */
    async generateImage(body: Omit<GenerateRequest, 'num_images' | 'format'>, format: ImageFormat = 'png', init: RequestOptions = {}): Promise<GeneratedImage> {
      const { error, response } = await http.POST('/generate', {
        body: { ...body, num_images: 1, format },
        headers: { accept: `image/${format}` },
        parseAs: 'stream',
        ...init,
      });
      if (!response.ok) throw new SnoopiError(response, error);
      return {
        bytes: new Uint8Array(await response.arrayBuffer()),
        contentType: response.headers.get('content-type') ?? `image/${format}`,
        seed: Number(response.headers.get('x-seed')),
        model: response.headers.get('x-model') ?? '',
        serverTiming: response.headers.get('server-timing'),
      };
    },

    /** GET /models: the registered models; `active` marks the one /generate uses by default. */
    listModels: (init: RequestOptions = {}) => unwrap(http.GET('/models', init)),

    /** GET /healthz: liveness. */
    health: (init: RequestOptions = {}) => unwrap(http.GET('/healthz', init)),

    /** GET /readyz: resolves once the active model is loaded; rejects with SNOOPI_NOT_READY (503) before. */
    ready: (init: RequestOptions = {}) => unwrap(http.GET('/readyz', init)),
  };
}

export type SnoopiClient = ReturnType<typeof createClient>;
