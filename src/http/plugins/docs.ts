// OpenAPI 3 generated from the route schemas (@fastify/swagger), Swagger UI at /docs and the document at
// /openapi.json. Nothing here depends on the environment, so `snoopi openapi` writes the same file everywhere.
import fp from 'fastify-plugin';
import swagger, { type SwaggerTransformObject } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { packageInfo } from '../../config/paths.js';
import { ErrorBody } from '../schemas/error.js';
import { OpenAIErrorBody } from '../schemas/openai.js';

/** `value` without the serializer hint format: 'unsafe' (see schemas/generate.ts), which means nothing to clients. */
function withoutSerializerHints(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutSerializerHints);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key, field]) => !(key === 'format' && field === 'unsafe'))
      .map(([key, field]) => [key, withoutSerializerHints(field)]),
  );
}

export default fp(
  async function docs(app: FastifyInstance) {
    app.addSchema(ErrorBody);
    app.addSchema(OpenAIErrorBody);
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: { title: packageInfo.name, version: packageInfo.version, description: packageInfo.description },
        servers: [{ url: 'http://localhost:8080', description: 'a local `npm start` with the default PORT' }],
        tags: [
          { name: 'generate', description: 'text to image' },
          { name: 'models', description: 'the model registry' },
          { name: 'openai', description: "OpenAI's Images and Models APIs: OpenAI's clients work with a base URL of <server>/v1" },
          { name: 'operations', description: 'health, readiness and metrics' },
          { name: 'admin', description: 'fine-tune jobs and model activation (bearer token; 404 when no token is configured)' },
        ],
        components: {
          securitySchemes: {
            bearerAuth: { type: 'http', scheme: 'bearer', description: 'SNOOPI_ADMIN_TOKEN' },
            apiKey: { type: 'http', scheme: 'bearer', description: 'an API key of SNOOPI_API_KEYS; only when the server has keys (else open)' },
          },
        },
      },
      // Shared schemas keep their $id as their name under components.schemas.
      refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
      transformObject: (document) =>
        withoutSerializerHints('openapiObject' in document ? document.openapiObject : document.swaggerObject) as ReturnType<SwaggerTransformObject>,
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'snoopi-docs' },
);
