// Error answers under /v1 in OpenAI's shape, { error: { message, type, param, code } }, so that OpenAI's clients raise
// their typed errors. The one error handler (error-handler.ts) still decides everything else (status, code, message,
// Retry-After, logging); this plugin, registered in the /v1 context only, reshapes its body before serialisation.
// `code` is this service's stable code (docs/errors.md); `param` names the request field at fault when one is.
import fp from 'fastify-plugin';
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { errors, type ErrorCode } from '../../errors.js';
import { redactUrl } from '../request-log.js';
import type { ErrorBody } from '../schemas/error.js';
import type { OpenAIErrorBody } from '../schemas/openai.js';

// The field behind the errors that the service raises about one field.
const paramOfCode: Partial<Record<ErrorCode, string>> = {
  SNOOPI_SIZE_UNSUPPORTED: 'size',
  SNOOPI_SCALE_OUT_OF_RANGE: 'negative_scale',
  SNOOPI_MODEL_NOT_FOUND: 'model',
};

/** OpenAI's error type for a status: what its clients and tools branch on besides the status. */
export function openAIErrorType(status: number): string {
  if (status >= 500) return 'server_error';
  if (status === 429) return 'rate_limit_error';
  return 'invalid_request_error';
}

/** The first field a schema validation error names: "n" for body/n, the unknown or missing field's name. */
function validationParam(error: FastifyError): string | null {
  const issue = error.validation?.[0];
  if (issue === undefined) return null;
  const params = issue.params as Record<string, unknown>;
  if (issue.keyword === 'additionalProperties') return String(params.additionalProperty);
  if (issue.keyword === 'required') return String(params.missingProperty);
  return issue.instancePath.split('/')[1] || null;
}

const isErrorBody = (payload: unknown): payload is ErrorBody =>
  typeof payload === 'object' &&
  payload !== null &&
  typeof (payload as ErrorBody).code === 'string' &&
  typeof (payload as ErrorBody).statusCode === 'number';

export function openAIErrorBody(body: ErrorBody, param: string | null): OpenAIErrorBody {
  return { error: { message: body.message, type: openAIErrorType(body.statusCode), param, code: body.code } };
}

export default fp(
  async function openAIErrors(app: FastifyInstance) {
    const validationParams = new WeakMap<FastifyRequest, string | null>();
    app.addHook('onError', async (request, _reply, error) => {
      validationParams.set(request, validationParam(error));
    });
    app.addHook('preSerialization', async (request, reply, payload) => {
      if (reply.statusCode < 400 || !isErrorBody(payload)) return payload;
      return openAIErrorBody(payload, validationParams.get(request) ?? paramOfCode[payload.code as ErrorCode] ?? null);
    });
    // Unknown routes under /v1 too, which the root's not-found handler would answer in the native shape.
    app.setNotFoundHandler(async function routeNotFound(request) {
      throw errors.SNOOPI_ROUTE_NOT_FOUND(request.method, redactUrl(request.url));
    });
  },
  { name: 'snoopi-openai-errors' },
);
