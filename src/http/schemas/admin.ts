// Admin routes (docs/design/http-api.md): jobs and model activation. Every route needs the bearer token; without a
// token configured they answer 404 as if absent. What depends on the files on disk (which backbones have a teacher,
// which model ids are taken) and the rules a schema cannot say (min < max, guidance that fits the method) are
// checked by the job manager; everything else here.
import { Type, type Static, type TSchema } from '@fastify/type-provider-typebox';
import { BACKBONE_PATTERN } from '../../jobs/backbones.js';
import { JOB_STAGES, JOB_STATUSES } from '../../jobs/job-record.js';
import { FINETUNE_LIMITS } from '../../jobs/job-spec.js';
import { MODEL_ID_PATTERN } from '../../registry/model-manifest.js';
import { errorResponses } from './error.js';

const security = [{ bearerAuth: [] }];

/** OpenAPI 3.0's spelling of "this or null"; fast-json-stringify reads `nullable` too. */
const Nullable = <T extends TSchema>(schema: T) => Type.Unsafe<Static<T> | null>({ ...schema, nullable: true });

const Kappa = Type.Number(FINETUNE_LIMITS.guidance);

const GuidanceRange = Type.Object(
  { min: Kappa, max: Kappa },
  { additionalProperties: false, description: 'PG-SB: a new kappa ~ U(min, max) at every step; min < max' },
);
const GuidanceFixed = Type.Object({ fixed: Kappa }, { additionalProperties: false, description: 'SB: one fixed kappa' });

const specFields = {
  backbone: Type.String({
    pattern: BACKBONE_PATTERN,
    description: 'a backbone with a teacher checkpoint (models/base/teacher-<backbone>.pt); another is a 400 that lists the known ones',
    examples: ['unet-eps'],
  }),
  method: Type.Enum(['pg-sb', 'sb'], { type: 'string', default: 'pg-sb', description: 'pg-sb: random kappa (PG-SB); sb: fixed kappa (SwiftBrush)' }),
  guidance: Type.Optional(
    Type.Union([GuidanceRange, GuidanceFixed], {
      description: `{min, max} for pg-sb, {fixed} for sb, ${FINETUNE_LIMITS.guidance.minimum}..${FINETUNE_LIMITS.guidance.maximum}; default: the trainer's for the backbone (U(0.5, 4) for UNets, U(0.5, 3) for the DiT; 4.5 fixed)`,
    }),
  ),
  steps: Type.Integer({ ...FINETUNE_LIMITS.steps, default: 1000, description: 'student steps' }),
  batch_size: Type.Integer({ ...FINETUNE_LIMITS.batch_size, default: 32, description: 'per trainer process' }),
  seed: Type.Integer({ ...FINETUNE_LIMITS.seed, default: 0, description: `prompt stream and init seed (${FINETUNE_LIMITS.seed.maximum + 1} and up are evaluation sets)` }),
  name: Type.String({ pattern: MODEL_ID_PATTERN, description: 'the id of the model the job makes' }),
};

export const FinetuneBody = Type.Object(
  {
    backbone: specFields.backbone,
    method: Type.Optional(specFields.method),
    guidance: specFields.guidance,
    steps: Type.Optional(specFields.steps),
    batch_size: Type.Optional(specFields.batch_size),
    seed: Type.Optional(specFields.seed),
    name: Type.Optional({ ...specFields.name, description: 'the id of the model the job makes; default <backbone>-<method>-<job id>' }),
  },
  { additionalProperties: false },
);
/** As validated: ajv (useDefaults) has filled in the defaults. */
export type FinetuneBody = Static<typeof FinetuneBody> & { method: 'pg-sb' | 'sb'; steps: number; batch_size: number; seed: number };

const JobSpec = Type.Object(specFields, { additionalProperties: false, description: 'the job as submitted, defaults filled in' });

export const Job = Type.Object(
  {
    id: Type.String({ examples: ['ft-mi9x2k4c-3f9a1b'] }),
    status: Type.Enum(JOB_STATUSES, { type: 'string' }),
    stage: Type.Unsafe<(typeof JOB_STAGES)[number] | null>({
      type: 'string',
      enum: [...JOB_STAGES, null],
      nullable: true,
      description: 'while running: training, validating (the package), registering, or cancelling; else null',
    }),
    runner: Type.Enum(['local', 'kubernetes'], { type: 'string' }),
    spec: JobSpec,
    created_at: Type.String({ format: 'date-time' }),
    started_at: Nullable(Type.String({ format: 'date-time' })),
    finished_at: Nullable(Type.String({ format: 'date-time' })),
    progress: Type.Object(
      {
        step: Type.Integer({ minimum: 0 }),
        total: Type.Integer({ minimum: 0 }),
        eta_s: Nullable(Type.Number({ description: "seconds left, the trainer's estimate" })),
      },
      { additionalProperties: false },
    ),
    losses: Type.Record(Type.String(), Type.Number(), { description: 'the latest progress line: student and lora losses' }),
    kappa: Nullable(Type.Number({ description: "the teacher's guidance scale at the latest progress line" })),
    metrics: Type.Record(Type.String(), Type.Number(), { description: 'the latest evaluation: fid, align' }),
    model_id: Nullable(Type.String({ description: 'the registered model, once the job succeeded' })),
    error: Nullable(Type.String({ description: 'why the job failed' })),
  },
  { $id: 'FinetuneJob', additionalProperties: false, description: 'A fine-tune job' },
);

const JobRef = Type.Ref('FinetuneJob');
const JobAnswer = Type.Object({ job: JobRef }, { additionalProperties: false });
const JobParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });

export const finetuneSchema = {
  tags: ['admin'],
  security,
  summary: 'Start a PG-SB (or SB) fine-tune of a backbone',
  description:
    'Queues a job (one runs at a time by default) that distils the backbone\'s teacher into a one-step student, ' +
    'exports it, checks the package and registers it. Follow it at Location.',
  body: FinetuneBody,
  response: {
    202: {
      description: 'queued',
      headers: { location: Type.String({ description: '/admin/jobs/{id}' }) },
      ...JobAnswer,
    },
    ...errorResponses(400, 401, 404, 409, 413, 415, 500, 503),
  },
} as const;

export const listJobsSchema = {
  tags: ['admin'],
  security,
  summary: 'Every fine-tune job, newest first',
  response: {
    200: { description: 'the jobs, finished ones included (they survive restarts)', ...Type.Object({ data: Type.Array(JobRef) }, { additionalProperties: false }) },
    ...errorResponses(401, 404, 500),
  },
} as const;

export const getJobSchema = {
  tags: ['admin'],
  security,
  summary: 'One fine-tune job',
  params: JobParams,
  response: { 200: { description: 'the job', ...JobAnswer }, ...errorResponses(401, 404, 500) },
} as const;

export const jobEventsSchema = {
  tags: ['admin'],
  security,
  summary: 'A fine-tune job as server-sent events',
  description:
    'text/event-stream: the current state at once, then one `job` event (data: the job as JSON) after every change; ' +
    'the stream ends after the event of a finished job (succeeded, failed or cancelled).',
  params: JobParams,
  response: {
    200: { description: 'the event stream', content: { 'text/event-stream': { schema: Type.String() } } },
    ...errorResponses(401, 404, 500),
  },
} as const;

export const cancelJobSchema = {
  tags: ['admin'],
  security,
  summary: 'Cancel a fine-tune job',
  description:
    'A queued job is cancelled at once; a running trainer gets SIGTERM (it saves a resumable checkpoint) or its ' +
    'Kubernetes Job is deleted, and the answer comes once it has stopped.',
  params: JobParams,
  response: { 200: { description: 'the cancelled job', ...JobAnswer }, ...errorResponses(401, 404, 409, 500) },
} as const;

export const activateModelSchema = {
  tags: ['admin'],
  security,
  summary: 'Make a registered model the default',
  description:
    'Loads and warms the model, then switches: requests in flight finish on the model they started with, whose ' +
    'sessions are released once idle. Nothing is dropped.',
  params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
  response: {
    200: {
      description: 'the model is active',
      ...Type.Object({ active: Type.String(), previous: Nullable(Type.String()) }, { additionalProperties: false }),
    },
    ...errorResponses(401, 404, 500, 503),
  },
} as const;
