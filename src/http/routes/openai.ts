// The OpenAI-compatible API, registered under /v1: OpenAI's clients and the tools built on them work with a base URL
// of <server>/v1 (docs/clients.md). Every answer under /v1, errors included, has OpenAI's shape.
import type { FastifyPluginAsync } from 'fastify';
import openAIErrors from '../plugins/openai-errors.js';
import openAIImageRoutes from './openai-images.js';
import openAIModelRoutes from './openai-models.js';

const openAIRoutes: FastifyPluginAsync = async (app) => {
  await app.register(openAIErrors);
  await app.register(openAIImageRoutes);
  await app.register(openAIModelRoutes);
};

export default openAIRoutes;
