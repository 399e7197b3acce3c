// Liveness and readiness. Both read in-memory flags only: no awaiting, nothing the inference path can hold up.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errors } from '../../errors.js';
import { healthzSchema, readyzSchema } from '../schemas/health.js';

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/healthz', { schema: healthzSchema, config: { probe: true } }, async () => ({ status: 'ok' as const }));

  app.get('/readyz', { schema: readyzSchema, config: { probe: true } }, async () => {
    if (app.lifecycle.shuttingDown) throw errors.SNOOPI_SHUTTING_DOWN();
    const active = app.generation.listModels().find((model) => model.active);
    if (active === undefined) throw errors.SNOOPI_NOT_READY('the active model has no valid package in the models folder');
    const engine = app.generation.stats().models.find((model) => model.id === active.id)?.engine;
    if (engine?.restarting) throw errors.SNOOPI_NOT_READY(`a worker of its engine died and is restarting (${engine.lastFailure ?? 'no reason given'})`);
    if (!app.generation.isReady()) throw errors.SNOOPI_NOT_READY('the active model is still loading');
    return { status: 'ready' as const, model: active.id };
  });
};

export default healthRoutes;
