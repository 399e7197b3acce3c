// `snoopi serve`: open the registry, start listening at once (/healthz answers, /readyz says 503 while the active
// model loads and warms), then report ready. SIGTERM/SIGINT shut down gracefully (plugins/graceful-shutdown.ts).
import { pino } from 'pino';
import type { Settings } from './config/settings.js';
import { GenerationService, type GenerationServiceOptions } from './generation/generation-service.js';
import { buildApp, loggerOptions } from './http/app.js';

/** The generation service's options from the settings; the one place the two meet (serve and the tests use it). */
export function serviceOptions(settings: Settings): GenerationServiceOptions {
  return {
    modelsDir: settings.modelsDir,
    executionProvider: settings.executionProvider,
    intraOpThreads: settings.intraOpThreads,
    intraOpWait: settings.intraOpWait,
    maxBatch: settings.maxBatch,
    maxLoadedModels: settings.maxLoadedModels,
    maxQueueRows: settings.maxQueueRows,
    deadlineMs: settings.deadlineMs,
    cacheBytes: settings.cacheBytes,
    ...(settings.activeModel === undefined ? {} : { activeModel: settings.activeModel }),
  };
}

/**
 * Serves until the app has closed: resolves after a graceful shutdown (SIGTERM/SIGINT); rejects at once when the
 * server cannot listen (port in use, unresolvable host), and after shutting down when the active model cannot load.
 * A replica that cannot serve must not linger half-alive: the caller exits non-zero.
 */
export async function serve(settings: Settings): Promise<void> {
  const logger = pino({ level: settings.logLevel, ...loggerOptions });
  const service = await GenerationService.create({ ...serviceOptions(settings), log: logger.child({ component: 'generation' }) });
  const app = buildApp(settings, service, { handleSignals: true, logger });
  const closed = new Promise<void>((resolve) => app.addHook('onClose', async () => resolve()));
  await app.listen({ port: settings.port, host: settings.host });
  try {
    await service.ready();
    if (!app.lifecycle.shuttingDown) app.log.info({ model: service.stats().activeModel }, 'ready: the active model is loaded and warmed');
  } catch (err) {
    // Stopped while loading: not a failure.
    if (app.lifecycle.shuttingDown) return closed;
    app.log.fatal({ err }, 'the active model failed to load; shutting down');
    await app.lifecycle.shutdown('the active model failed to load');
    throw err;
  }
  return closed;
}
