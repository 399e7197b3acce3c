// The HTTP app: a plain factory. It takes validated settings and a generation service built elsewhere; plugins wire
// them in (decorate, declare dependencies, release in onClose), then the routes are registered. Nothing listens
// here: the serve command calls listen(), tests call inject() or listen on port 0.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Settings } from '../config/settings.js';
import type { JobRunner } from '../jobs/job-runner.js';
import type { InferenceService } from './inference-service.js';
import { RequestLogController, serializeRequest } from './request-log.js';
import adminJobs from './plugins/admin-jobs.js';
import apiKeys from './plugins/api-keys.js';
import docs from './plugins/docs.js';
import errorHandler, { answerParserError } from './plugins/error-handler.js';
import generation from './plugins/generation.js';
import gracefulShutdown from './plugins/graceful-shutdown.js';
import loadShedding from './plugins/load-shedding.js';
import metrics from './plugins/metrics.js';
import adminRoutes from './routes/admin.js';
import generateRoutes from './routes/generate.js';
import healthRoutes from './routes/health.js';
import metricsRoute from './routes/metrics.js';
import modelRoutes from './routes/models.js';
import openAIRoutes from './routes/openai.js';
import playgroundRoutes from './routes/playground.js';

export interface BuildAppOptions {
  /** Install SIGTERM/SIGINT handlers that shut the app down gracefully (the serve command). */
  handleSignals?: boolean;
  /** A pino logger shared with the service (the serve command); by default the app makes its own at settings.logLevel. */
  logger?: FastifyBaseLogger;
  /** The runner of fine-tune jobs (tests); default: the one settings.jobRunner names. */
  jobRunner?: JobRunner;
}

/**
 * Options of every logger made for the app (here or by the serve command): paths that may hold a credential are
 * censored, and a request's URL is logged with its query-string credentials redacted (request-log.ts).
 */
export const loggerOptions = {
  redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
  serializers: { req: serializeRequest },
};

const requestIdPattern = /^[\w.:-]{1,128}$/;

// A caller's X-Request-Id is kept when it is a sane token, so one id follows a request across services.
function requestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
}

declare module 'fastify' {
  interface FastifyInstance {
    settings: Settings;
  }
  interface FastifyContextConfig {
    /** A probe or scrape route, called every few seconds: no "request received/completed" log lines. */
    probe?: boolean;
  }
}

export function buildApp(settings: Settings, service: InferenceService, options: BuildAppOptions = {}): FastifyInstance {
  const app = Fastify({
    ...(options.logger === undefined ? { logger: { level: settings.logLevel, ...loggerOptions } } : { loggerInstance: options.logger }),
    logController: new RequestLogController(settings.requestLog),
    genReqId: requestId,
    bodyLimit: settings.bodyLimit,
    // A request must arrive whole (headers and body) within requestTimeoutMs of its first byte, or it is answered
    // 408 and its connection closed: a client that trickles or stops mid-body cannot hold a connection. Node checks
    // every connectionsCheckingInterval (30 s by default, here 250 ms); an answer being computed is not bounded.
    requestTimeout: settings.requestTimeoutMs,
    http: { requestTimeout: settings.requestTimeoutMs, headersTimeout: settings.requestTimeoutMs, connectionsCheckingInterval: 250 },
    clientErrorHandler: answerParserError,
    // Shutdown answers are ours (503 SNOOPI_SHUTTING_DOWN with Retry-After), not Fastify's built-in 503.
    return503OnClosing: false,
    ajv: {
      customOptions: {
        // Reject unknown fields and wrong types instead of dropping or coercing them.
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: true,
      },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('settings', settings);
  // Only JSON bodies are accepted: without the text/plain parser, any other content type is a 415.
  app.removeContentTypeParser('text/plain');
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  app.register(errorHandler);
  app.register(generation, { service });
  app.register(gracefulShutdown, { graceMs: settings.shutdownGraceMs, handleSignals: options.handleSignals ?? false });
  app.register(loadShedding);
  app.register(adminJobs, options.jobRunner === undefined ? {} : { runner: options.jobRunner });
  app.register(metrics);
  app.register(apiKeys);
  app.register(docs);

  app.register(healthRoutes);
  app.register(modelRoutes);
  app.register(generateRoutes);
  app.register(openAIRoutes, { prefix: '/v1' });
  app.register(metricsRoute);
  app.register(playgroundRoutes);
  app.register(adminRoutes);
  return app;
}
