// Refuses inference work early, in onRequest, before the body is read: 503 while shutting down or while the active
// model is not ready yet. A full queue is refused by the batcher itself (429), which knows each request's size.
// Routes opt in with config.inference; /healthz, /readyz and /metrics never pass through here.
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { errors } from '../../errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route queues inference work: refuse it while not ready or shutting down. */
    inference?: boolean;
  }
}

export default fp(
  async function loadShedding(app: FastifyInstance) {
    app.addHook('onRequest', async (request) => {
      if (request.routeOptions.config.inference !== true) return;
      if (app.lifecycle.shuttingDown) throw errors.SNOOPI_SHUTTING_DOWN();
      if (!app.generation.isReady()) throw errors.SNOOPI_NOT_READY('the active model is still loading');
    });
  },
  { name: 'snoopi-load-shedding', dependencies: ['snoopi-generation', 'snoopi-graceful-shutdown'] },
);
