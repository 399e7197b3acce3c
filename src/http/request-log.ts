// Fastify's per-request log lines, shaped by settings.requestLog. At thousands of requests a second they are a
// visible share of the HTTP thread, and Fastify's default writes two per request ("incoming request" with the
// caller's address, "request completed" with the status); the default here writes one, with flat fields:
//   full       Fastify's two lines
//   completed  one line once the answer is sent: method, url, status, ms
//   errors     no line per request (the error handler logs failures, refusals and bad requests)
// Every line carries the request id (reqId); probe and scrape routes (config.probe) never log per request; a
// response that fails while streaming is always logged.
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Settings } from '../config/settings.js';

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
      { method: request.method, url: request.url, statusCode: reply.statusCode, responseTime: reply.elapsedTime },
      'request completed',
    );
  }
}
