// The one error body of docs/errors.md, shared by every route as the component schema `ErrorBody`, and the helper that
// lists a route's error responses so that OpenAPI documents each of them.
import { STATUS_CODES } from 'node:http';
import { Type, type Static } from '@fastify/type-provider-typebox';

export const ErrorBody = Type.Object(
  {
    statusCode: Type.Integer({ description: 'the HTTP status, repeated', examples: [429] }),
    code: Type.String({ description: 'stable machine-readable code (docs/errors.md)', examples: ['SNOOPI_QUEUE_FULL'] }),
    error: Type.String({ description: 'the HTTP status text', examples: ['Too Many Requests'] }),
    message: Type.String({ description: 'what went wrong, for humans' }),
  },
  { $id: 'ErrorBody', additionalProperties: false, description: 'Every error answer has this body' },
);
export type ErrorBody = Static<typeof ErrorBody>;

// Seconds a client should wait before retrying, sent as Retry-After with every 429 and 503: a full queue drains
// within a batch or two; loading a model or a restart takes longer.
export const retryAfterSeconds: Readonly<Record<number, number>> = { 429: 1, 503: 5 };

const RetryAfterHeader = Type.Integer({ description: 'seconds to wait before retrying', minimum: 0 });

/** Response schemas for the given error statuses: the body schema `bodyId`, plus Retry-After where the status carries it. */
export function errorResponsesWith(bodyId: string, ...statuses: number[]) {
  const responses: Record<number, unknown> = {};
  for (const status of statuses) {
    responses[status] = {
      description: STATUS_CODES[status],
      ...(retryAfterSeconds[status] === undefined ? {} : { headers: { 'retry-after': RetryAfterHeader } }),
      ...Type.Ref(bodyId),
    };
  }
  return responses;
}

/** Response schemas for the given error statuses with the ErrorBody. */
export const errorResponses = (...statuses: number[]) => errorResponsesWith('ErrorBody', ...statuses);
