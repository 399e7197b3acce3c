// POST /v1/images/generations, OpenAI's image generation, on the same pipeline as POST /generate (the generation
// service); and GET /v1/images/files/{name}, the images of its answers with response_format "url", kept in memory
// for SNOOPI_IMAGE_URL_TTL_MS within SNOOPI_IMAGE_URL_BYTES (images/expiring-images.ts).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errors } from '../../errors.js';
import { ExpiringImages } from '../../images/expiring-images.js';
import { disconnectSignal } from '../client-disconnect.js';
import { imageQuality } from '../schemas/generate.js';
import { imageFileSchema, imageGenerationSchema, type ImageGenerationBody } from '../schemas/openai.js';

const openAIImageRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const stored = new ExpiringImages({ ttlMs: app.settings.imageUrlTtlMs, maxBytes: app.settings.imageUrlBytes });

  app.post(
    '/images/generations',
    { schema: imageGenerationSchema, config: { inference: true, apiKey: { images: (request) => (request.body as ImageGenerationBody).n } } },
    async (request, reply) => {
      const body = request.body as ImageGenerationBody;

      // 1. Check what only OpenAI's request has: the size must be the model's (an unknown model is the service's 404).
      const model = app.generation.listModels().find((entry) => (body.model === undefined ? entry.active : entry.id === body.model));
      const resolution = model === undefined ? undefined : `${model.image.width}x${model.image.height}`;
      if (resolution !== undefined && body.size !== 'auto' && body.size !== resolution) {
        throw errors.SNOOPI_SIZE_UNSUPPORTED(body.size, model!.id, resolution);
      }
      if (body.output_compression !== undefined && body.output_format === 'png') {
        throw errors.SNOOPI_VALIDATION('body/output_compression applies to jpeg and webp only; png is lossless');
      }

      // 2. Generate; a client that goes away before its batch runs is dropped from the batch.
      const result = await app.generation.generate({
        prompt: body.prompt,
        negativePrompt: body.negative_prompt,
        negativeScale: body.negative_scale,
        seed: body.seed,
        numImages: body.n,
        model: body.model,
        format: body.output_format,
        quality: body.output_compression ?? imageQuality.default,
        signal: disconnectSignal(reply),
      });

      // 3. Answer with the images, or with where to fetch them.
      const files = `${request.protocol}://${request.host}${app.prefix}/images/files`;
      const [first] = result.images;
      return {
        created: Math.floor(Date.now() / 1000),
        data: result.images.map(({ data, contentType, seed }) =>
          body.response_format === 'url'
            ? { url: `${files}/${stored.put({ data, contentType }, body.output_format)}`, seed }
            : { b64_json: data.toString('base64'), seed },
        ),
        output_format: body.output_format,
        size: `${first!.width}x${first!.height}`,
      };
    },
  );

  app.get('/images/files/:name', { schema: imageFileSchema }, async (request, reply) => {
    const image = stored.get(request.params.name);
    if (image === undefined) throw errors.SNOOPI_IMAGE_NOT_FOUND(request.params.name, Math.round(stored.options.ttlMs / 1000));
    return reply.type(image.contentType).header('cache-control', 'private, no-transform').send(image.data);
  });
};

export default openAIImageRoutes;
