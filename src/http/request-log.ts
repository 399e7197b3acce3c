// Fastify's per-request log lines, shaped by settings.requestLog. At thousands of requests a second they are a
// visible share of the HTTP thread, and Fastify's default writes two per request ("incoming request" with the
// caller's address, "request completed" with the status); the default here writes one, with flat fields:
//   full       Fastify's two lines
//   completed  one line once the answer is sent: method, url, status, ms
//   errors     no line per request (the error handler logs failures, refusals and bad requests)
// Every line carries the request id (reqId); probe and scrape routes (config.probe) never log per request; a
// response that fails while streaming is always logged. A credential in the query string (?token=..., ?api_key=...)
// is never logged: every URL that reaches a log line goes through redactUrl().
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Settings } from '../config/settings.js';

// Query parameters whose value is taken for a credential.
const credentialParameter = /token|secret|passw|api[-_]?key|auth|signature|credential|^key$|^sig$/i;

const decodedName = (name: string): string => {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    return name;
  }
};

/** `url` with the value of every credential-like query parameter replaced by [redacted]; the rest byte for byte. */
export function redactUrl(url: string): string {
  const query = url.indexOf('?');
  if (query === -1) return url;
  const pairs = url.slice(query + 1).split('&').map((pair) => {
    const equals = pair.indexOf('=');
    if (equals === -1 || !credentialParameter.test(decodedName(pair.slice(0, equals)))) return pair;
    return `${pair.slice(0, equals)}=[redacted]`;
  });
  return `${url.slice(0, query + 1)}${pairs.join('&')}`;
}

/**
 * The `req` of a log line (Fastify's fields, with the URL redacted): requestLog full's "incoming request". Pino
 * applies it to whatever a line logs as `req`, so it takes any object.
 */
export function serializeRequest(request: Partial<FastifyRequest>) {
  return {
    method: request.method,
    url: request.url === undefined ? undefined : redactUrl(request.url),
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
  };
}

export type RequestLogMode = Settings['requestLog'];

export class RequestLogController extends LogController {
  constructor(private readonly mode: RequestLogMode) {
    super({ disableRequestLogging: (request) => request.routeOptions.config.probe === true });
  }

  override incomingRequest(request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (this.mode === 'full') super.incomingRequest(request, reply, metadata);
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (error || this.mode === 'full') {
      super.requestCompleted(error, request, reply, metadata);
      return;
    }
    if (this.mode === 'errors' || this.isLogDisabled(request)) return;
    reply.log.info(
      { method: request.method, url: redactUrl(request.url), statusCode: reply.statusCode, responseTime: reply.elapsedTime },
      'request completed',
    );
  }
}
