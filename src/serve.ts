// `snoopi serve`: open the registry, start listening at once (/healthz answers, /readyz says 503 while the active
// model loads and warms), then report ready. SIGTERM/SIGINT shut down gracefully (plugins/graceful-shutdown.ts).
import { pino } from 'pino';
import type { Settings } from './config/settings.js';
import { GenerationService, type GenerationServiceOptions } from './generation/generation-service.js';
import { buildApp, logRedaction } from './http/app.js';

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

export async function serve(settings: Settings): Promise<void> {
  const logger = pino({ level: settings.logLevel, redact: logRedaction });
  const service = await GenerationService.create({ ...serviceOptions(settings), log: logger.child({ component: 'generation' }) });
  const app = buildApp(settings, service, { handleSignals: true, logger });
  await app.listen({ port: settings.port, host: settings.host });
  service.ready().then(
    () => app.log.info({ model: service.stats().activeModel }, 'ready: the active model is loaded and warmed'),
    (err: unknown) => {
      // A replica that cannot load its model must not linger half-alive: say why and stop.
      app.log.fatal({ err }, 'the active model failed to load; shutting down');
      process.exitCode = 1;
      void app.lifecycle.shutdown('the active model failed to load');
    },
  );
}
