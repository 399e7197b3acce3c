// Every error the service can answer with, in one table. Core modules (engine, batcher, registry) throw these
// too: they carry a code and a status but know nothing of Fastify. The HTTP error handler turns any of them into
// the one body shape of docs/design/http-api.md: { statusCode, code, error, message }.
import createError from '@fastify/error';

export const errors = {
  SNOOPI_VALIDATION: createError('SNOOPI_VALIDATION', 'Invalid request: %s', 400),
  SNOOPI_BAD_JSON: createError('SNOOPI_BAD_JSON', 'Body is not valid JSON: %s', 400),
  SNOOPI_BAD_REQUEST: createError('SNOOPI_BAD_REQUEST', 'Malformed request: %s', 400),
  SNOOPI_SCALE_OUT_OF_RANGE: createError('SNOOPI_SCALE_OUT_OF_RANGE', 'negative_scale %s is outside 0..%s for model %s', 400),
  SNOOPI_SIZE_UNSUPPORTED: createError('SNOOPI_SIZE_UNSUPPORTED', 'size %s is not available: model %s draws %s images', 400),
  SNOOPI_UNKNOWN_BACKBONE: createError('SNOOPI_UNKNOWN_BACKBONE', 'No teacher checkpoint for backbone %s; known backbones: %s', 400),
  SNOOPI_UNAUTHORIZED: createError('SNOOPI_UNAUTHORIZED', 'Missing or invalid bearer token', 401),
  SNOOPI_INVALID_API_KEY: createError('SNOOPI_INVALID_API_KEY', 'Missing or unknown API key; send Authorization: Bearer <key>', 401),
  SNOOPI_ROUTE_NOT_FOUND: createError('SNOOPI_ROUTE_NOT_FOUND', 'Route %s %s not found', 404),
  SNOOPI_MODEL_NOT_FOUND: createError('SNOOPI_MODEL_NOT_FOUND', 'Model %s not found; known models: %s', 404),
  SNOOPI_JOB_NOT_FOUND: createError('SNOOPI_JOB_NOT_FOUND', 'Job %s not found', 404),
  SNOOPI_IMAGE_NOT_FOUND: createError('SNOOPI_IMAGE_NOT_FOUND', 'Image %s is not here: image URLs expire after %s s, the oldest sooner when their memory is full', 404),
  SNOOPI_NOT_ACCEPTABLE: createError('SNOOPI_NOT_ACCEPTABLE', '%s', 406),
  SNOOPI_NAME_TAKEN: createError('SNOOPI_NAME_TAKEN', 'The model id %s is taken: %s', 409),
  SNOOPI_JOB_ENDED: createError('SNOOPI_JOB_ENDED', 'Job %s has already ended (%s)', 409),
  SNOOPI_REQUEST_TIMEOUT: createError('SNOOPI_REQUEST_TIMEOUT', 'The request was not received within %s ms; the connection is closed', 408),
  SNOOPI_BODY_TOO_LARGE: createError('SNOOPI_BODY_TOO_LARGE', 'Request body is larger than %s bytes', 413),
  SNOOPI_UNSUPPORTED_MEDIA_TYPE: createError('SNOOPI_UNSUPPORTED_MEDIA_TYPE', 'Content-Type %s is not supported; send application/json', 415),
  SNOOPI_HEADERS_TOO_LARGE: createError('SNOOPI_HEADERS_TOO_LARGE', 'The request headers are larger than %s bytes', 431),
  SNOOPI_CLIENT_DISCONNECTED: createError('SNOOPI_CLIENT_DISCONNECTED', 'The client disconnected before its batch ran; the request was dropped', 499),
  // A refusal under load: made by the thousand per second in a storm and logged without its stack, so none is captured.
  SNOOPI_QUEUE_FULL: createError('SNOOPI_QUEUE_FULL', 'The queue for model %s is full (%s images waiting); retry later', 429, Error, false),
  SNOOPI_RATE_LIMITED: createError('SNOOPI_RATE_LIMITED', 'API key %s is over its limit of %s per minute; retry in %s s', 429),
  SNOOPI_NOT_READY: createError('SNOOPI_NOT_READY', 'The service is not ready: %s', 503),
  SNOOPI_SHUTTING_DOWN: createError('SNOOPI_SHUTTING_DOWN', 'The service is shutting down', 503),
  SNOOPI_DEADLINE_EXCEEDED: createError('SNOOPI_DEADLINE_EXCEEDED', 'The request waited %s ms, past its deadline of %s ms', 504),
  SNOOPI_ENGINE_FAILED: createError('SNOOPI_ENGINE_FAILED', 'Inference failed: %s', 500),
  SNOOPI_MODEL_LOAD_FAILED: createError('SNOOPI_MODEL_LOAD_FAILED', 'Model %s could not be loaded: %s', 500),
  SNOOPI_INTERNAL: createError('SNOOPI_INTERNAL', 'Internal error; the request id is in the logs', 500),
} as const;

export type ErrorCode = keyof typeof errors;
