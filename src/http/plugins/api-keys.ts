// API keys (SNOOPI_API_KEYS, src/auth/api-keys.ts) and their rate limits, for the routes that opt in with
// config.apiKey (POST /generate and everything under /v1). Without a key file every route stays open. With one:
//  1. onRequest, before the body is read: `Authorization: Bearer <key>` must name a key of the file (else 401), and the
//     key's requests of the current minute are counted (else 429);
//  2. preHandler, once the body is valid: the images the request asks for are counted (else 429).
// Both limits are @fastify/rate-limit's fixed one-minute windows in its in-memory store, one window per key; a 429
// carries Retry-After: the seconds until the window restarts. A refused request still counts toward its window, as
// @fastify/rate-limit counts requests; refused images do not. /metrics counts per key under the key's name.
import rateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter } from 'prom-client';
import { ApiKeys, type ApiKey } from '../../auth/api-keys.js';
import { errors } from '../../errors.js';
import { bearerToken } from '../bearer-token.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route needs an API key when the server has them; `images` counts the images a validated request asks for. */
    apiKey?: { images?: (request: FastifyRequest) => number };
  }
  interface FastifyRequest {
    /** The key the request presented: set on the routes of config.apiKey when the server has keys, else null. */
    apiKey: ApiKey | null;
  }
}

const windowMs = 60_000;
const windowSeconds = (ttlMs: number): number => Math.max(1, Math.ceil(ttlMs / 1000));

export default fp(
  async function apiKeys(app: FastifyInstance) {
    app.decorateRequest('apiKey', null);
    const { apiKeys: path, apiKeyRequestsPerMinute: requestsPerMinute, apiKeyImagesPerMinute: imagesPerMinute } = app.settings;
    if (path === undefined) return;
    const keys = await ApiKeys.load(path, { requestsPerMinute, imagesPerMinute });

    const requests = new Counter({
      name: 'snoopi_api_key_requests_total',
      help: 'Requests answered on the routes that need an API key, by key name and status',
      labelNames: ['key', 'status_code'] as const,
      registers: [app.metrics],
    });
    const images = new Counter({
      name: 'snoopi_api_key_images_total',
      help: 'Images asked for and let through the rate limit, by key name',
      labelNames: ['key'] as const,
      registers: [app.metrics],
    });
    const limited = new Counter({
      name: 'snoopi_api_key_rate_limited_total',
      help: 'Requests refused 429 by a per-key limit, by key name and limit (requests or images)',
      labelNames: ['key', 'limit'] as const,
      registers: [app.metrics],
    });
    for (const { name } of keys.list()) {
      images.inc({ key: name }, 0);
      for (const limit of ['requests', 'images']) limited.inc({ key: name, limit }, 0);
    }

    await app.register(rateLimit, { global: false, timeWindow: windowMs, keyGenerator: (request) => request.apiKey!.name });
    const countRequest = app.rateLimit({
      max: (request) => request.apiKey!.requestsPerMinute,
      onExceeded: (request) => limited.inc({ key: request.apiKey!.name, limit: 'requests' }),
      errorResponseBuilder: (request, context) =>
        errors.SNOOPI_RATE_LIMITED(request.apiKey!.name, `${context.max} requests`, windowSeconds(context.ttl)),
    });
    const imagesWindow = app.createRateLimit({ max: (request) => request.apiKey!.imagesPerMinute });

    app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.routeOptions.config.apiKey === undefined) return;
      const presented = bearerToken(request.headers.authorization);
      const key = presented === undefined ? undefined : keys.find(presented);
      if (key === undefined) {
        reply.header('www-authenticate', 'Bearer realm="snoopi"');
        throw errors.SNOOPI_INVALID_API_KEY();
      }
      request.apiKey = key;
      await countRequest.call(app, request, reply);
    });

    app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
      const countImages = request.routeOptions.config.apiKey?.images;
      const key = request.apiKey;
      if (countImages === undefined || key === null) return;
      const asked = countImages(request);
      const window = await imagesWindow(request, { increment: false });
      if (window.isAllowed) return; // only keys of an allowList, which there is none of
      if (window.remaining < asked) {
        limited.inc({ key: key.name, limit: 'images' });
        // A window with nothing spent yet (ttl 0) restarts a minute after its first image.
        const retryAfter = windowSeconds(window.ttl || windowMs);
        reply.header('retry-after', String(retryAfter));
        throw errors.SNOOPI_RATE_LIMITED(key.name, `${window.max} images`, retryAfter);
      }
      for (let image = 0; image < asked; image++) await imagesWindow(request);
      images.inc({ key: key.name }, asked);
    });

    app.addHook('onResponse', async (request, reply) => {
      if (request.apiKey !== null) requests.inc({ key: request.apiKey.name, status_code: String(reply.statusCode) });
    });
  },
  { name: 'snoopi-api-keys', dependencies: ['snoopi-metrics'], decorators: { fastify: ['settings', 'metrics'] } },
);
