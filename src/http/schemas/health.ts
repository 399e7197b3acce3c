import { Type } from '@fastify/type-provider-typebox';
import { errorResponses } from './error.js';

export const healthzSchema = {
  tags: ['operations'],
  summary: 'Liveness: 200 while the process can serve HTTP',
  description: 'Does no work and waits on nothing the inference path holds, so it answers fast under full load.',
  response: {
    200: Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false, description: 'alive' }),
  },
} as const;

export const readyzSchema = {
  tags: ['operations'],
  summary: 'Readiness: 200 once the active model is loaded and warmed',
  description: '503 with Retry-After before that (SNOOPI_NOT_READY) and while shutting down (SNOOPI_SHUTTING_DOWN).',
  response: {
    200: Type.Object(
      { status: Type.Literal('ready'), model: Type.String({ description: 'the active model' }) },
      { additionalProperties: false, description: 'ready to generate' },
    ),
    ...errorResponses(503),
  },
} as const;
