// GET /v1/models and /v1/models/{id}: the registry of GET /models in OpenAI's list and model shapes.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errors } from '../../errors.js';
import { modelListSchema, modelSchema } from '../schemas/openai.js';

const openAIModelRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // OpenAI's `created` is when a model was made; packages do not record it, so it is when this server first listed it.
  const firstListed = new Map<string, number>();
  const openAIModel = (id: string) => {
    if (!firstListed.has(id)) firstListed.set(id, Math.floor(Date.now() / 1000));
    return { id, object: 'model' as const, created: firstListed.get(id)!, owned_by: 'snoopi' };
  };

  app.get('/models', { schema: modelListSchema, config: { apiKey: {} } }, async () => ({
    object: 'list' as const,
    data: app.generation.listModels().map((model) => openAIModel(model.id)),
  }));

  app.get('/models/:id', { schema: modelSchema, config: { apiKey: {} } }, async (request) => {
    const ids = app.generation.listModels().map((model) => model.id);
    if (!ids.includes(request.params.id)) throw errors.SNOOPI_MODEL_NOT_FOUND(request.params.id, ids.join(', ') || '(none)');
    return openAIModel(request.params.id);
  });
};

export default openAIModelRoutes;
