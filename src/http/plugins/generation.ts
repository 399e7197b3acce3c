// Wires the generation service (plain TypeScript, built outside Fastify) into the app: decorates it and releases
// its sessions in onClose, which Fastify runs after the server has stopped and in-flight requests have finished.
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { InferenceService } from '../inference-service.js';

declare module 'fastify' {
  interface FastifyInstance {
    generation: InferenceService;
  }
}

export default fp(
  async function generation(app: FastifyInstance, options: { service: InferenceService }) {
    app.decorate('generation', options.service);
    app.addHook('onClose', async () => {
      await options.service.close();
    });
  },
  { name: 'snoopi-generation' },
);
