// The OpenAI-compatible routes under /v1, in the shapes of OpenAI's Images and Models APIs, so that OpenAI's clients
// and the tools built on them work with a base URL. Limits are this service's own (the same as POST /generate's):
// fields both APIs share reuse /generate's schemas; OpenAI's own fields take this service's ranges.
import { Type, type Static } from '@fastify/type-provider-typebox';
import { MAX_IMAGES_PER_REQUEST } from '../../generation/generation-service.js';
import { imageFormats, type ImageFormat } from '../../images/image-encoder.js';
import { errorResponsesWith } from './error.js';
import { GenerateBody, MAX_PROMPT_LENGTH, imageQuality } from './generate.js';
import { apiKeySecurity } from './security.js';

// OpenAPI 3.0's spelling of "a string or null"; fast-json-stringify reads `nullable` too.
const nullableString = (description: string) => Type.Unsafe<string | null>({ type: 'string', nullable: true, description });

export const OpenAIErrorBody = Type.Object(
  {
    error: Type.Object(
      {
        message: Type.String({ description: 'what went wrong, for humans' }),
        type: Type.String({
          description: 'invalid_request_error (4xx), rate_limit_error (429) or server_error (5xx)',
          examples: ['invalid_request_error'],
        }),
        param: nullableString('the request field at fault, when there is one'),
        code: Type.String({ description: "this service's stable error code (docs/errors.md)", examples: ['SNOOPI_VALIDATION'] }),
      },
      { additionalProperties: false },
    ),
  },
  { $id: 'OpenAIError', additionalProperties: false, description: "Every error answer under /v1 has this body, OpenAI's" },
);
export type OpenAIErrorBody = Static<typeof OpenAIErrorBody>;

/** Response schemas for the given error statuses, with OpenAI's error body. */
export const openAIErrorResponses = (...statuses: number[]) => errorResponsesWith('OpenAIError', ...statuses);

export const responseFormats = ['b64_json', 'url'] as const;
// OpenAI's quality values: all accepted, none changes a one-step generation.
const qualities = ['auto', 'standard', 'hd', 'low', 'medium', 'high'] as const;

export const ImageGenerationBody = Type.Object(
  {
    prompt: Type.String({ minLength: 1, maxLength: MAX_PROMPT_LENGTH, description: "tokenized to the model's max length" }),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'an id from GET /v1/models; default: the active model' })),
    n: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_IMAGES_PER_REQUEST, default: 1, description: 'image i uses seed + i' })),
    size: Type.Optional(
      Type.String({
        pattern: '^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$',
        default: 'auto',
        description: "WIDTHxHEIGHT: the model's resolution (GET /models, image) or auto; any other size is a 400, never a resize",
      }),
    ),
    response_format: Type.Optional(
      Type.Enum(responseFormats, {
        type: 'string',
        default: 'b64_json',
        description: 'url: links to GET /v1/images/files/{name}, valid for SNOOPI_IMAGE_URL_TTL_MS (default 10 minutes)',
      }),
    ),
    output_format: Type.Optional(Type.Enum(imageFormats, { type: 'string', default: 'png' })),
    output_compression: Type.Optional(
      Type.Integer({
        minimum: imageQuality.minimum,
        maximum: imageQuality.maximum,
        description: `jpeg and webp only: the encoder's quality, ${imageQuality.minimum}..${imageQuality.maximum}; default ${imageQuality.default}`,
      }),
    ),
    quality: Type.Optional(Type.Enum(qualities, { type: 'string', description: 'accepted for compatibility; one denoiser step either way' })),
    user: Type.Optional(Type.String({ maxLength: 256, description: 'accepted for compatibility; not used' })),
    negative_prompt: GenerateBody.properties.negative_prompt,
    negative_scale: GenerateBody.properties.negative_scale,
    seed: GenerateBody.properties.seed,
  },
  { additionalProperties: false, description: "OpenAI's image generation request, with this service's negative_prompt, negative_scale and seed" },
);
// Optional for clients; always present in a validated body, where ajv (useDefaults) has filled in the defaults.
export type ImageGenerationBody = Static<typeof ImageGenerationBody> & {
  n: number;
  size: string;
  response_format: (typeof responseFormats)[number];
  output_format: ImageFormat;
  negative_prompt: string;
};

const GeneratedImage = Type.Object(
  {
    // format 'unsafe': see schemas/generate.ts, b64_json.
    b64_json: Type.Optional(Type.String({ format: 'unsafe', description: 'the encoded image, base64 (response_format b64_json)' })),
    url: Type.Optional(Type.String({ description: 'where to fetch the image until it expires (response_format url)' })),
    seed: Type.Integer({ description: 'the seed of this image (an extension of this service)' }),
  },
  { additionalProperties: false },
);

export const ImagesResponse = Type.Object(
  {
    created: Type.Integer({ description: 'unix time, seconds' }),
    data: Type.Array(GeneratedImage),
    output_format: Type.Enum(imageFormats, { type: 'string' }),
    size: Type.String({ description: 'WIDTHxHEIGHT of the images' }),
  },
  { additionalProperties: false },
);
export type ImagesResponse = Static<typeof ImagesResponse>;

export const imageGenerationSchema = {
  tags: ['openai'],
  summary: "Generate images (OpenAI's POST /v1/images/generations)",
  description:
    "OpenAI's Images API: the official clients call it with a base URL of <server>/v1. The negative prompt, its scale " +
    'and the seed are extra body fields. Answers with base64 images, or with URLs served by this process.',
  security: apiKeySecurity,
  body: ImageGenerationBody,
  response: {
    200: { description: 'the generated images', ...ImagesResponse },
    ...openAIErrorResponses(400, 401, 404, 413, 415, 429, 500, 503, 504),
  },
} as const;

const RawImage = Type.Unsafe<Buffer>({ type: 'string', format: 'binary' });

export const imageFileSchema = {
  tags: ['openai'],
  summary: 'An image of a response_format "url" answer',
  description: 'No API key needed: the name is 128 random bits. Gone once expired or dropped for room (404).',
  params: Type.Object({ name: Type.String({ description: 'as in the url of the answer' }) }),
  response: {
    200: {
      description: 'the image',
      content: { 'image/png': { schema: RawImage }, 'image/jpeg': { schema: RawImage }, 'image/webp': { schema: RawImage } },
    },
    ...openAIErrorResponses(404),
  },
} as const;

const OpenAIModel = Type.Object(
  {
    id: Type.String({ description: 'a model id, as in GET /models' }),
    object: Type.Literal('model'),
    created: Type.Integer({ description: 'unix time, seconds, at which this server first listed the model' }),
    owned_by: Type.String(),
  },
  { additionalProperties: false },
);

export const OpenAIModelList = Type.Object({ object: Type.Literal('list'), data: Type.Array(OpenAIModel) }, { additionalProperties: false });

export const modelListSchema = {
  tags: ['openai'],
  summary: "The registered models (OpenAI's GET /v1/models)",
  security: apiKeySecurity,
  response: { 200: { description: 'every registered model', ...OpenAIModelList }, ...openAIErrorResponses(401, 429, 500) },
} as const;

export const modelSchema = {
  tags: ['openai'],
  summary: "One registered model (OpenAI's GET /v1/models/{id})",
  security: apiKeySecurity,
  params: Type.Object({ id: Type.String() }),
  response: { 200: { description: 'the model', ...OpenAIModel }, ...openAIErrorResponses(401, 404, 429, 500) },
} as const;
