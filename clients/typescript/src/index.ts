// @snoopi/client: a typed client of the snoopi-serve HTTP API. The types are generated from openapi/openapi.json
// (src/schema.d.ts, `npm run sdk`); the requests go through openapi-fetch. Each method resolves to the response body
// of a 2xx answer and rejects with a SnoopiError that carries the API's error body ({ statusCode, code, error,
// message }, or OpenAI's { error: { message, type, param, code } } under /v1) otherwise. `http` is the underlying
// openapi-fetch client, typed by the same schema, for anything else.
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
export type FinetuneRequest = paths['/admin/finetune']['post']['requestBody']['content']['application/json'];
export type FinetuneJob = components['schemas']['FinetuneJob'];
export type JobStatus = FinetuneJob['status'];
export type Activation = JsonBody<paths['/admin/models/{id}/activate']['post']['responses'][200]>;
export type OpenAIErrorBody = components['schemas']['OpenAIError'];
export type ImageGenerationRequest = paths['/v1/images/generations']['post']['requestBody']['content']['application/json'];
export type ImagesResponse = JsonBody<paths['/v1/images/generations']['post']['responses'][200]>;
export type OpenAIModelList = JsonBody<paths['/v1/models']['get']['responses'][200]>;
export type OpenAIModel = JsonBody<paths['/v1/models/{id}']['get']['responses'][200]>;

/** A non-2xx answer. `code` is the API's stable error code (docs/errors.md), e.g. SNOOPI_QUEUE_FULL. */
export class SnoopiError extends Error {
  override name = 'SnoopiError';
  readonly status: number;
  readonly code: string;
  /** The error body, when the answer had one (a proxy in between may answer without it); OpenAI's shape under /v1. */
  readonly body: ErrorBody | OpenAIErrorBody | undefined;
  /** Seconds to wait before retrying, from Retry-After (429 and 503 answers). */
  readonly retryAfter: number | undefined;

  constructor(response: Response, body: unknown) {
    const errorBody = isErrorBody(body) || isOpenAIErrorBody(body) ? body : undefined;
    // Under /v1 the message and the code are inside OpenAI's `error` object.
    const details = isOpenAIErrorBody(errorBody) ? errorBody.error : errorBody;
    super(details?.message ?? `HTTP ${response.status} ${response.statusText}`);
    this.status = response.status;
    this.code = details?.code ?? `HTTP_${response.status}`;
    this.body = errorBody;
    const retryAfter = response.headers.get('retry-after');
    this.retryAfter = retryAfter === null || !/^\d+$/.test(retryAfter) ? undefined : Number(retryAfter);
  }
}

function isErrorBody(body: unknown): body is ErrorBody {
  return typeof body === 'object' && body !== null && typeof (body as ErrorBody).code === 'string' && typeof (body as ErrorBody).message === 'string';
}

function isOpenAIErrorBody(body: unknown): body is OpenAIErrorBody {
  return typeof body === 'object' && body !== null && isErrorBody((body as OpenAIErrorBody).error);
}

export interface ClientOptions {
  /** Bearer token of the admin routes (the server's SNOOPI_ADMIN_TOKEN). */
  token?: string;
  /** An API key, for a server with SNOOPI_API_KEYS: sent to every route but the admin ones. */
  apiKey?: string;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
  /** A fetch implementation (default: the global fetch). */
  fetch?: (request: Request) => Promise<Response>;
}

/** Per-call options; a type alias (not an interface) so that openapi-fetch's init type accepts it. */
export type RequestOptions = { signal?: AbortSignal };

/** One image as raw bytes (generateImage). */
export interface GeneratedImage {
  bytes: Uint8Array;
  contentType: string;
  seed: number;
  model: string;
  /** The Server-Timing header: queue, encode, generate, image and total durations. */
  serverTiming: string | null;
}

const finished: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'cancelled']);

/** The `job` events of a text/event-stream body: each one's data is the job as JSON. */
async function* jobEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<FinetuneJob> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replaceAll('\r\n', '\n');
      let end: number;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const lines = buffer.slice(0, end).split('\n');
        buffer = buffer.slice(end + 2);
        const event = lines.find((line) => line.startsWith('event:'))?.slice('event:'.length).trim() ?? 'message';
        const data = lines.filter((line) => line.startsWith('data:')).map((line) => line.slice('data:'.length).trimStart());
        if (event === 'job' && data.length > 0) yield JSON.parse(data.join('\n')) as FinetuneJob;
      }
    }
  } finally {
    // A caller that stops early closes the connection.
    await reader.cancel().catch(() => {});
  }
}

export function createClient(baseUrl: string, options: ClientOptions = {}) {
  const http = createFetchClient<paths>({ baseUrl, headers: { ...options.headers }, ...(options.fetch === undefined ? {} : { fetch: options.fetch }) });
  // The admin token to the admin routes, the API key to the others: each credential goes only where it is asked for.
  http.use({
    onRequest({ request, schemaPath }) {
      const credential = schemaPath.startsWith('/admin/') ? options.token : options.apiKey;
      if (credential !== undefined) request.headers.set('authorization', `Bearer ${credential}`);
      return request;
    },
  });

  async function unwrap<Data>(call: Promise<{ data?: Data; error?: unknown; response: Response }>): Promise<Data> {
    const { data, error, response } = await call;
    if (!response.ok) throw new SnoopiError(response, error);
    return data as Data;
  }

  return {
    http,

    /** POST /generate: images as base64 in JSON, with their seeds and the request's timings. */
    // The 200 answer has several representations; with Accept: application/json it is the JSON one.
    generate: (body: GenerateRequest, init: RequestOptions = {}) =>
      unwrap(http.POST('/generate', { body, headers: { accept: 'application/json' }, ...init })) as Promise<GenerateResponse>,

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

    /**
     * The OpenAI-compatible routes under /v1, typed by this SDK. OpenAI's own clients work there too, with a base URL
     * of <server>/v1 (docs/clients.md); errors carry OpenAI's body.
     */
    openai: {
      /** POST /v1/images/generations: OpenAI's request, plus negative_prompt, negative_scale and seed. */
      generateImages: (body: ImageGenerationRequest, init: RequestOptions = {}) => unwrap(http.POST('/v1/images/generations', { body, ...init })),
      /** GET /v1/models. */
      listModels: (init: RequestOptions = {}) => unwrap(http.GET('/v1/models', init)),
      /** GET /v1/models/{id}. */
      getModel: (id: string, init: RequestOptions = {}) => unwrap(http.GET('/v1/models/{id}', { params: { path: { id } }, ...init })),
    },

    /** The admin routes: they need the token (401 without it) and answer 404 on a server that has none set. */
    admin: {
      /** POST /admin/finetune: queues a fine-tune job (202). */
      finetune: (body: FinetuneRequest, init: RequestOptions = {}) => unwrap(http.POST('/admin/finetune', { body, ...init })),
      /** GET /admin/jobs: every job, newest first. */
      listJobs: (init: RequestOptions = {}) => unwrap(http.GET('/admin/jobs', init)),
      /** GET /admin/jobs/{id}. */
      getJob: (id: string, init: RequestOptions = {}) => unwrap(http.GET('/admin/jobs/{id}', { params: { path: { id } }, ...init })),
      /** DELETE /admin/jobs/{id}: cancels the job. */
      cancelJob: (id: string, init: RequestOptions = {}) => unwrap(http.DELETE('/admin/jobs/{id}', { params: { path: { id } }, ...init })),
      /** GET /admin/jobs/{id}/events: the job now, then after every change, until it has finished. */
      async *watchJob(id: string, init: RequestOptions = {}): AsyncGenerator<FinetuneJob> {
        const { error, response } = await http.GET('/admin/jobs/{id}/events', {
          params: { path: { id } },
          headers: { accept: 'text/event-stream' },
          parseAs: 'stream',
          ...init,
        });
        if (!response.ok || response.body === null) throw new SnoopiError(response, error);
        for await (const job of jobEvents(response.body)) {
          yield job;
          if (finished.has(job.status)) return;
        }
      },
      /** POST /admin/models/{id}/activate: makes a registered model the default; in-flight requests are not dropped. */
      activateModel: (id: string, init: RequestOptions = {}) =>
        unwrap(http.POST('/admin/models/{id}/activate', { params: { path: { id } }, ...init })),
    },
  };
}

export type SnoopiClient = ReturnType<typeof createClient>;
