import { Type, type Static } from '@fastify/type-provider-typebox';
import { errorResponses } from './error.js';

const ModelEntry = Type.Object(
  {
    id: Type.String(),
    display_name: Type.String(),
    backbone: Type.String(),
    method: Type.String({ description: 'pg-sb | sb | imported | teacher-init' }),
    parameterization: Type.String({ description: 'eps | v | x0' }),
    active: Type.Boolean({ description: 'the model /generate uses when the request names none' }),
    loaded: Type.Boolean({ description: 'its sessions are open (the active model once warmed; others on first use)' }),
    image: Type.Object({ width: Type.Integer(), height: Type.Integer() }, { additionalProperties: false }),
    nasa: Type.Object({ default_scale: Type.Number(), max_scale: Type.Number() }, { additionalProperties: false }),
    // OpenAPI 3.0's spelling of "cpu, cuda or null"; fast-json-stringify reads `nullable` too.
    execution_provider: Type.Unsafe<'cpu' | 'cuda' | null>({
      type: 'string',
      enum: ['cpu', 'cuda', null],
      nullable: true,
      description: 'the onnxruntime execution provider the sessions run on; null while not loaded',
    }),
    metrics: Type.Record(Type.String(), Type.Unknown(), { description: "the training record's evaluation metrics" }),
  },
  { additionalProperties: false },
);

export const ModelList = Type.Object({ data: Type.Array(ModelEntry) }, { additionalProperties: false });
export type ModelList = Static<typeof ModelList>;

export const modelsSchema = {
  tags: ['models'],
  summary: 'The registered models',
  response: { 200: { description: 'every registered model', ...ModelList }, ...errorResponses(500) },
} as const;
