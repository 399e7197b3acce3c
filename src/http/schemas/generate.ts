// POST /generate (docs/design/http-api.md). Ranges that depend on the model (negative_scale's maximum, the
// model id) are checked by the generation service, which knows the models; everything else is checked here.
import { Type, type Static } from '@fastify/type-provider-typebox';
import { MAX_IMAGES_PER_REQUEST } from '../../generation/generation-service.js';
import { imageFormats, qualityRange } from '../../images/image-encoder.js';
import { MAX_SEED } from '../../noise/seeded-noise.js';
import { errorResponses } from './error.js';
import { apiKeySecurity } from './security.js';

export const MAX_PROMPT_LENGTH = 2000;
/** The jpeg and webp encoders' quality: its range and the default of both APIs. */
export const imageQuality = { ...qualityRange, default: 90 } as const;

export const GenerateBody = Type.Object(
  {
    prompt: Type.String({ minLength: 1, maxLength: MAX_PROMPT_LENGTH, description: "tokenized to the model's max length; see truncated" }),
    negative_prompt: Type.Optional(Type.String({ maxLength: MAX_PROMPT_LENGTH, default: '', description: 'applied with NASA in cross-attention' })),
    negative_scale: Type.Optional(
      Type.Number({ minimum: 0, description: "NASA scale, 0..the model's nasa.max_scale; 0 disables NASA; default: the model's nasa.default_scale with a negative prompt, else 0" }),
    ),
    seed: Type.Optional(
      Type.Integer({ minimum: 0, maximum: MAX_SEED, description: 'default: random; image i uses seed + i (mod 2^32); always echoed' }),
    ),
    num_images: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_IMAGES_PER_REQUEST, default: 1 })),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'an id from GET /models; default: the active model' })),
    format: Type.Optional(
      Type.Enum(imageFormats, {
        type: 'string',
        description: 'default: the image type named in Accept, else png. A format that conflicts with Accept is a 406',
      }),
    ),
    quality: Type.Optional(Type.Integer({ ...imageQuality, description: 'jpeg and webp only; png is lossless' })),
  },
  { additionalProperties: false },
);
// Optional for clients; always present in a validated body, where ajv (useDefaults) has filled in the defaults.
export type GenerateBody = Static<typeof GenerateBody> & { negative_prompt: string; num_images: number; quality: number };

const GeneratedImage = Type.Object(
  {
    seed: Type.Integer({ description: 'the seed of this image' }),
    content_type: Type.String({ description: 'image/png, image/jpeg or image/webp' }),
    width: Type.Integer(),
    height: Type.Integer(),
    // format 'unsafe': fast-json-stringify copies the string without scanning it for characters to escape (base64
    // has none); at thousands of responses a second that scan was a visible share of the HTTP thread. It is a
    // serializer hint, not part of the API: plugins/docs.ts leaves it out of the OpenAPI document.
    b64_json: Type.String({ format: 'unsafe', description: 'the encoded image, base64' }),
  },
  { additionalProperties: false },
);

const Timings = Type.Object(
  {
    queue_ms: Type.Number({ description: 'waiting for a batch' }),
    encode_ms: Type.Number({ description: 'tokenizing and text encoding (0 on an embedding-cache hit)' }),
    generate_ms: Type.Number({ description: 'the generator call of the batch' }),
    image_ms: Type.Number({ description: 'encoding the pixels as png/jpeg/webp' }),
    total_ms: Type.Number(),
  },
  { additionalProperties: false },
);

export const GenerateResponse = Type.Object(
  {
    model: Type.String(),
    created: Type.Integer({ description: 'unix time, seconds' }),
    images: Type.Array(GeneratedImage),
    timings: Timings,
    batch_size: Type.Integer({ description: 'images in the generator call that made these' }),
    truncated: Type.Boolean({ description: "the prompt had more tokens than the model's max length and was cut" }),
    negative_truncated: Type.Boolean({ description: 'the same for the negative prompt' }),
    negative_scale: Type.Number({ description: 'the NASA scale applied (the default filled in)' }),
  },
  { additionalProperties: false },
);
export type GenerateResponse = Static<typeof GenerateResponse>;

const RawImage = Type.Unsafe<Buffer>({ type: 'string', format: 'binary' });

export const generateSchema = {
  tags: ['generate'],
  summary: 'Generate images from a prompt in one denoiser call',
  description:
    'Answers JSON with base64 images. With Accept: image/png, image/jpeg or image/webp and num_images 1 the body is ' +
    'the image itself, with headers X-Seed, X-Model and Server-Timing.',
  security: apiKeySecurity,
  body: GenerateBody,
  response: {
    200: {
      description: 'the generated images',
      headers: {
        'server-timing': Type.String({
          description:
            'durations in ms: receive (body, validation), queue, encode (prompt embeddings), generate, image (encoding), ' +
            'total (the pipeline: queue to image), serialise (the answer body)',
        }),
        'x-seed': Type.Integer({ description: 'raw image responses: the seed of the image' }),
        'x-model': Type.String({ description: 'raw image responses: the model that made it' }),
      },
      content: {
        'application/json': { schema: GenerateResponse },
        'image/png': { schema: RawImage },
        'image/jpeg': { schema: RawImage },
        'image/webp': { schema: RawImage },
      },
    },
    ...errorResponses(400, 401, 404, 406, 413, 415, 429, 500, 503, 504),
  },
} as const;
