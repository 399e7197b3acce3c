// Turns every error into the one body of docs/errors.md, { statusCode, code, error, message }, with a code from the one
// table (src/errors.ts). Fastify's own errors (validation, body parsing, limits) are translated to our codes here;
// an error that is neither ours nor Fastify's is a bug: 500 SNOOPI_INTERNAL, logged with its stack, never shown.
// Node's HTTP parser refuses some requests before Fastify sees them (a request too slow to arrive, headers too
// large, Content-Length with chunked encoding): answerParserError writes the same body onto the socket and closes it.
import { STATUS_CODES, maxHeaderSize, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import fp from 'fastify-plugin';
import type { FastifyError, FastifyInstance, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { errors, type ErrorCode } from '../../errors.js';
import { redactUrl } from '../request-log.js';
import { retryAfterSeconds, type ErrorBody } from '../schemas/error.js';

function isOurs(error: FastifyError): boolean {
  return typeof error.code === 'string' && Object.hasOwn(errors, error.code) && typeof error.statusCode === 'number';
}

/** One sentence naming the field and the rule it broke, e.g. "body/num_images must be <= 8". */
export function describeValidation(issue: FastifySchemaValidationError, context: string): string {
  const params = issue.params as Record<string, unknown>;
  const path = `${context}${issue.instancePath}`;
  switch (issue.keyword) {
    case 'additionalProperties':
      return `${path}/${String(params.additionalProperty)} is not a known field`;
    case 'required':
      return `${path}/${String(params.missingProperty)} is required`;
    case 'enum':
      return `${path} must be one of ${(params.allowedValues as unknown[]).join(', ')}`;
    default:
      return `${path} ${issue.message ?? 'is invalid'}`;
  }
}

function translate(error: FastifyError, request: FastifyRequest, bodyLimit: number): FastifyError {
  if (isOurs(error)) return error;
  if (error.validation) {
    return errors.SNOOPI_VALIDATION(describeValidation(error.validation[0]!, error.validationContext ?? 'body'));
  }
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      // Fastify's parser also refuses prototype-poisoning keys, with the same error.
      return errors.SNOOPI_BAD_JSON('it does not parse, or it holds a __proto__ or constructor.prototype key');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return errors.SNOOPI_BAD_JSON('it is empty');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return errors.SNOOPI_BODY_TOO_LARGE(bodyLimit);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return errors.SNOOPI_UNSUPPORTED_MEDIA_TYPE(request.headers['content-type'] || '(none)');
  }
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    return errors.SNOOPI_BAD_REQUEST(error.message);
  }
  return errors.SNOOPI_INTERNAL();
}

// 499 is nginx's status for a request whose client went away; Node has no text for it.
const statusText = (status: number): string => STATUS_CODES[status] ?? (status === 499 ? 'Client Closed Request' : 'Error');

export function errorBody(error: FastifyError): ErrorBody {
  const statusCode = error.statusCode!;
  return { statusCode, code: error.code as ErrorCode, error: statusText(statusCode), message: error.message };
}

// Errors whose message is "<summary>: <detail>" with a server-side detail (a package's absolute paths and sha256s,
// onnxruntime's text about its files). A request without the admin token gets the summary and its request id; the
// whole message is logged under that id.
const detailForAdminsOnly: ReadonlySet<string> = new Set<ErrorCode>(['SNOOPI_MODEL_LOAD_FAILED']);

function answerBody(answer: FastifyError, request: FastifyRequest): ErrorBody {
  const body = errorBody(answer);
  if (!detailForAdminsOnly.has(body.code) || request.isAdmin === true) return body;
  const summary = body.message.slice(0, body.message.indexOf(': '));
  return { ...body, message: `${summary}; the reason is logged under request id ${request.id}` };
}

/** What Node's HTTP parser raised (a 'clientError'), as an error of the table; undefined when the client already left. */
export function parserErrorAnswer(error: Error & { code?: string; reason?: unknown }, socket: Socket, requestTimeoutMs: number): FastifyError | undefined {
  if (error.code === 'ECONNRESET' || socket.destroyed) return undefined;
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return errors.SNOOPI_REQUEST_TIMEOUT(requestTimeoutMs);
  if (error.code === 'HPE_HEADER_OVERFLOW') return errors.SNOOPI_HEADERS_TOO_LARGE(maxHeaderSize);
  return errors.SNOOPI_BAD_REQUEST(typeof error.reason === 'string' ? error.reason : error.message);
}

/** Fastify's clientErrorHandler: answers a request the parser refused with the one body, then closes the connection. */
export function answerParserError(this: FastifyInstance, error: Error & { code?: string }, socket: Socket): void {
  const answer = parserErrorAnswer(error, socket, this.settings.requestTimeoutMs);
  if (answer === undefined) return;
  this.log.info({ code: answer.code, status: answer.statusCode, remoteAddress: socket.remoteAddress }, answer.message);
  // As Node's own handler does: never write into an answer already under way on this connection.
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (socket.writable && inFlight?.headersSent !== true) {
    const body = JSON.stringify(errorBody(answer));
    socket.write(
      `HTTP/1.1 ${answer.statusCode} ${statusText(answer.statusCode!)}\r\nConnection: close\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

export default fp(
  async function errorHandler(app: FastifyInstance) {
    app.setErrorHandler(function handleError(error: FastifyError, request, reply) {
      const answer = translate(error, request, app.settings.bodyLimit);
      const status = answer.statusCode!;
      // Refusals under load or while starting or stopping (503, 504) are expected; other 5xx are failures.
      if (status >= 500 && status !== 503 && status !== 504) request.log.error({ err: error, code: answer.code }, answer.message);
      else request.log.info({ code: answer.code, status }, answer.message);
      // A refusal that knows when to come back (a per-key rate limit: plugins/api-keys.ts) has set Retry-After itself.
      const retryAfter = retryAfterSeconds[status];
      if (retryAfter !== undefined && !reply.hasHeader('retry-after')) reply.header('retry-after', String(retryAfter));
      reply.code(status).type('application/json; charset=utf-8').send(answerBody(answer, request));
    });

    app.setNotFoundHandler(function routeNotFound(request) {
      throw errors.SNOOPI_ROUTE_NOT_FOUND(request.method, redactUrl(request.url));
    });
  },
  { name: 'snoopi-error-handler', decorators: { fastify: ['settings'] } },
);
