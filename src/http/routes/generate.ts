// POST /generate. The pipeline itself (tokenize, embeddings, batch, generate, encode) lives in the generation
// service; this route only speaks HTTP: choose the representation, run, answer.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { disconnectSignal } from '../client-disconnect.js';
import { chooseRepresentation } from '../content-negotiation.js';
import { generateSchema, type GenerateBody } from '../schemas/generate.js';
import type { GenerateResult } from '../inference-service.js';

// Server-Timing: receive (from the request's arrival in Fastify to this handler: body, validation, hooks), the
// pipeline's phases and total, and serialise (from the pipeline's end to onSend: the answer object, base64, JSON),
// which onSend appends once the body is serialised.
const serverTiming = (receiveMs: number, { queueMs, encodeMs, generateMs, imageMs, totalMs }: GenerateResult['timings']): string =>
  `receive;dur=${receiveMs.toFixed(2)}, queue;dur=${queueMs.toFixed(2)}, encode;dur=${encodeMs.toFixed(2)}, ` +
  `generate;dur=${generateMs.toFixed(2)}, image;dur=${imageMs.toFixed(2)}, total;dur=${totalMs.toFixed(2)}`;

/** reply.elapsedTime when the pipeline answered, for the serialise timing. */
const answeredAt = new WeakMap<FastifyReply, number>();

async function appendSerialiseTiming(_request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const answered = answeredAt.get(reply);
  if (answered === undefined) return; // an error answer
  reply.header('server-timing', `${String(reply.getHeader('server-timing'))}, serialise;dur=${(reply.elapsedTime - answered).toFixed(2)}`);
}

const generateRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const config = { inference: true, apiKey: { images: (request: FastifyRequest) => (request.body as GenerateBody).num_images } };
  app.post('/generate', { schema: generateSchema, config, onSend: appendSerialiseTiming }, async (request, reply) => {
    const receiveMs = reply.elapsedTime;
    const body = request.body as GenerateBody;

    // 1. Decide JSON or raw image first: a 406 must not cost a generation.
    const representation = chooseRepresentation(request.headers.accept, body.format, body.num_images);

    // 2. Generate; a client that goes away before its batch runs is dropped from the batch.
    const result = await app.generation.generate({
      prompt: body.prompt,
      negativePrompt: body.negative_prompt,
      negativeScale: body.negative_scale,
      seed: body.seed,
      numImages: body.num_images,
      model: body.model,
      format: representation.format,
      quality: body.quality,
      signal: disconnectSignal(reply),
    });

    // 3. Answer.
    answeredAt.set(reply, reply.elapsedTime);
    reply.header('server-timing', serverTiming(receiveMs, result.timings));
    if (representation.kind === 'image') {
      const image = result.images[0]!;
      return reply.type(image.contentType).header('x-seed', String(image.seed)).header('x-model', result.model).send(image.data);
    }
    return {
      model: result.model,
      created: Math.floor(Date.now() / 1000),
      images: result.images.map((image) => ({
        seed: image.seed,
        content_type: image.contentType,
        width: image.width,
        height: image.height,
        b64_json: image.data.toString('base64'),
      })),
      timings: {
        queue_ms: result.timings.queueMs,
        encode_ms: result.timings.encodeMs,
        generate_ms: result.timings.generateMs,
        image_ms: result.timings.imageMs,
        total_ms: result.timings.totalMs,
      },
      batch_size: result.batchSize,
      truncated: result.truncated,
      negative_truncated: result.negativeTruncated,
      negative_scale: result.negativeScale,
    };
  });
};

export default generateRoutes;
