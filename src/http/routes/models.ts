import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { modelsSchema } from '../schemas/models.js';

const modelRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/models', { schema: modelsSchema }, async () => ({
    data: app.generation.listModels().map((model) => ({
      id: model.id,
      display_name: model.displayName,
      backbone: model.backbone,
      method: model.method,
      parameterization: model.parameterization,
      active: model.active,
      loaded: model.loaded,
      image: { width: model.image.width, height: model.image.height },
      nasa: { default_scale: model.nasa.defaultScale, max_scale: model.nasa.maxScale },
      execution_provider: model.executionProvider,
      metrics: model.metrics,
    })),
  }));
};

export default modelRoutes;
