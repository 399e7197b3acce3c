// Every setting of the service: its type, range, default and description (schema), and where it is read from (an
// environment variable and a --flag). The help text, the parser and the validation all come from this one table.
import { Type, type Static } from '@fastify/type-provider-typebox';
import { join } from 'node:path';
import { DEFAULT_INTRA_OP_WAIT, INTRA_OP_WAITS } from '../engine/intra-op-wait.js';
import { repoRoot } from './paths.js';

const KiB = 1024;
const MiB = 1024 * KiB;

export const SettingsSchema = Type.Object(
  {
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'TCP port to listen on (0: any free port)' }),
    host: Type.String({ minLength: 1, default: '0.0.0.0', description: 'address to listen on' }),
    modelsDir: Type.String({ minLength: 1, default: join(repoRoot, 'models'), description: 'registry root: one folder per model package' }),
    activeModel: Type.Optional(
      Type.String({ minLength: 1, description: 'the model /generate uses by default (unset: PG-SB before SB before undistilled, then the lowest recorded FID)' }),
    ),
    adminToken: Type.Optional(
      Type.String({ minLength: 16, description: 'bearer token of the admin routes (unset: admin routes answer 404)' }),
    ),
    apiKeys: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'a file of hashed API keys, one per line (docs/clients.md, API keys); /generate and /v1/* then need Authorization: Bearer <key> (unset: open to all)',
      }),
    ),
    apiKeyRequestsPerMinute: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      default: 60,
      description: 'requests each API key may make per minute, unless its line in the key file says otherwise (429 beyond)',
    }),
    apiKeyImagesPerMinute: Type.Integer({
      minimum: 1,
      maximum: 10_000_000,
      default: 240,
      description: 'images each API key may ask for per minute, unless its line in the key file says otherwise (429 beyond)',
    }),
    imageUrlTtlMs: Type.Integer({
      minimum: 1000,
      maximum: 86_400_000,
      default: 600_000,
      description: 'how long the image URLs of a /v1/images/generations answer with response_format "url" stay valid',
    }),
    imageUrlBytes: Type.Integer({
      minimum: MiB,
      maximum: 16 * 1024 * MiB,
      default: 64 * MiB,
      description: 'bytes of images kept for those URLs; beyond it the oldest are dropped before they expire',
    }),
    jobsDir: Type.String({ minLength: 1, default: join(repoRoot, 'runs', 'jobs'), description: 'fine-tune job records: one folder per job' }),
    baseModelsDir: Type.Optional(
      Type.String({ minLength: 1, description: 'teacher, CLIP and VAE checkpoints fine-tune jobs start from (unset: <models-dir>/base)' }),
    ),
    jobRunner: Type.Enum(['local', 'kubernetes'], {
      type: 'string',
      default: 'local',
      description: 'where fine-tune jobs run: a child process, or a Kubernetes Job (src/jobs/README.md)',
    }),
    maxRunningJobs: Type.Integer({ minimum: 1, maximum: 64, default: 1, description: 'fine-tune jobs running at once; others wait queued' }),
    jobCancelGraceMs: Type.Integer({
      minimum: 0,
      maximum: 3_600_000,
      default: 30_000,
      description: 'a cancelled local trainer gets SIGTERM (it saves a checkpoint), then SIGKILL after this many ms',
    }),
    trainerPython: Type.String({ minLength: 1, default: '/usr/bin/python3', description: 'the Python that runs trainer.distill (local runner)' }),
    trainerConfig: Type.Optional(
      Type.String({ minLength: 1, description: 'a JSON file of trainer.distill keys added to every job (device, threads, eval_n, ...)' }),
    ),
    k8sNamespace: Type.Optional(
      Type.String({ minLength: 1, description: "namespace of the trainer Jobs (unset: the pod's own, else the kubeconfig context's, else default)" }),
    ),
    k8sJobTemplate: Type.String({
      minLength: 1,
      default: join(repoRoot, 'k8s', 'base', 'trainer-job-template.yaml'),
      description: 'the batch/v1 Job manifest the kubernetes runner fills in for each job',
    }),
    k8sPollMs: Type.Integer({
      minimum: 100,
      maximum: 600_000,
      default: 5000,
      description: "ms between two reads of a trainer Job's status (kubernetes runner)",
    }),
    executionProvider: Type.Enum(['cpu', 'cuda'], {
      type: 'string',
      default: 'cpu',
      description: 'onnxruntime execution provider (cuda falls back to cpu when CUDA cannot load)',
    }),
    intraOpThreads: Type.Integer({
      minimum: 0,
      maximum: 1024,
      default: 2,
      description: 'onnxruntime intra-op threads per session (0: onnxruntime chooses, one per core)',
    }),
    intraOpWait: Type.Enum(INTRA_OP_WAITS, {
      type: 'string',
      default: DEFAULT_INTRA_OP_WAIT,
      description:
        "how the generator's idle onnxruntime intra-op threads wait for work (the text encoder's always sleep): " +
        'block (sleep), spin-in-call (busy-wait while a call runs, stop when it returns: faster calls for a little ' +
        'more CPU per isolated request), or spin (busy-wait after calls too: the most CPU per isolated request); ' +
        'measured in the README, Performance',
    }),
    maxBatch: Type.Integer({ minimum: 1, maximum: 1024, default: 16, description: 'most images in one generator call' }),
    maxLoadedModels: Type.Integer({
      minimum: 1,
      maximum: 1024,
      default: 4,
      description: 'models loaded at once; beyond it the least recently used one that is not active is drained and unloaded',
    }),
    maxQueueRows: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      default: 256,
      description: 'most images waiting per model; beyond it /generate answers 429',
    }),
    deadlineMs: Type.Integer({
      minimum: 1,
      maximum: 3_600_000,
      default: 10_000,
      description: 'a request still queued after this many ms answers 504',
    }),
    cacheBytes: Type.Integer({
      minimum: KiB,
      maximum: 64 * 1024 * MiB,
      default: 64 * MiB,
      description: 'bytes of text embeddings kept in the LRU cache',
    }),
    bodyLimit: Type.Integer({ minimum: KiB, maximum: 16 * MiB, default: 64 * KiB, description: 'largest request body in bytes (413 beyond)' }),
    requestTimeoutMs: Type.Integer({
      minimum: 500,
      maximum: 600_000,
      default: 30_000,
      description:
        'most ms from the first byte of a request to its last (headers and body); a slower request is answered 408 and ' +
        'its connection closed (checked every 250 ms). The time to answer is not bounded by this',
    }),
    shutdownGraceMs: Type.Integer({
      minimum: 0,
      maximum: 600_000,
      default: 10_000,
      description: 'on SIGTERM/SIGINT, how long in-flight requests may take before connections are cut',
    }),
    logLevel: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      type: 'string',
      default: 'info',
      description: 'pino log level',
    }),
    requestLog: Type.Enum(['full', 'completed', 'errors'], {
      type: 'string',
      default: 'completed',
      description:
        'log lines per request at info: full (received and completed), completed (one line: method, url, status, ms), ' +
        'errors (none; errors are always logged). Every line carries the request id',
    }),
  },
  { additionalProperties: false },
);

export type Settings = Static<typeof SettingsSchema>;
export type SettingKey = keyof Settings;

export interface SettingSource {
  env: string;
  flag: string;
}

// Where each setting comes from. A flag wins over the environment; the schema default applies when neither is set.
export const settingSources: { readonly [K in SettingKey]: SettingSource } = {
  port: { env: 'PORT', flag: '--port' },
  host: { env: 'HOST', flag: '--host' },
  modelsDir: { env: 'SNOOPI_MODELS_DIR', flag: '--models-dir' },
  activeModel: { env: 'SNOOPI_ACTIVE_MODEL', flag: '--active-model' },
  adminToken: { env: 'SNOOPI_ADMIN_TOKEN', flag: '--admin-token' },
  apiKeys: { env: 'SNOOPI_API_KEYS', flag: '--api-keys' },
  apiKeyRequestsPerMinute: { env: 'SNOOPI_API_KEY_REQUESTS_PER_MINUTE', flag: '--api-key-requests-per-minute' },
  apiKeyImagesPerMinute: { env: 'SNOOPI_API_KEY_IMAGES_PER_MINUTE', flag: '--api-key-images-per-minute' },
  imageUrlTtlMs: { env: 'SNOOPI_IMAGE_URL_TTL_MS', flag: '--image-url-ttl-ms' },
  imageUrlBytes: { env: 'SNOOPI_IMAGE_URL_BYTES', flag: '--image-url-bytes' },
  jobsDir: { env: 'SNOOPI_JOBS_DIR', flag: '--jobs-dir' },
  baseModelsDir: { env: 'SNOOPI_BASE_MODELS_DIR', flag: '--base-models-dir' },
  jobRunner: { env: 'SNOOPI_JOB_RUNNER', flag: '--job-runner' },
  maxRunningJobs: { env: 'SNOOPI_MAX_RUNNING_JOBS', flag: '--max-running-jobs' },
  jobCancelGraceMs: { env: 'SNOOPI_JOB_CANCEL_GRACE_MS', flag: '--job-cancel-grace-ms' },
  trainerPython: { env: 'SNOOPI_TRAINER_PYTHON', flag: '--trainer-python' },
  trainerConfig: { env: 'SNOOPI_TRAINER_CONFIG', flag: '--trainer-config' },
  k8sNamespace: { env: 'SNOOPI_K8S_NAMESPACE', flag: '--k8s-namespace' },
  k8sJobTemplate: { env: 'SNOOPI_K8S_JOB_TEMPLATE', flag: '--k8s-job-template' },
  k8sPollMs: { env: 'SNOOPI_K8S_POLL_MS', flag: '--k8s-poll-ms' },
  executionProvider: { env: 'SNOOPI_EXECUTION_PROVIDER', flag: '--execution-provider' },
  intraOpThreads: { env: 'SNOOPI_INTRA_OP_THREADS', flag: '--intra-op-threads' },
  intraOpWait: { env: 'SNOOPI_INTRA_OP_WAIT', flag: '--intra-op-wait' },
  maxBatch: { env: 'SNOOPI_MAX_BATCH', flag: '--max-batch' },
  maxLoadedModels: { env: 'SNOOPI_MAX_LOADED_MODELS', flag: '--max-loaded-models' },
  maxQueueRows: { env: 'SNOOPI_MAX_QUEUE_ROWS', flag: '--max-queue-rows' },
  deadlineMs: { env: 'SNOOPI_DEADLINE_MS', flag: '--deadline-ms' },
  cacheBytes: { env: 'SNOOPI_CACHE_BYTES', flag: '--cache-bytes' },
  bodyLimit: { env: 'SNOOPI_BODY_LIMIT', flag: '--body-limit' },
  requestTimeoutMs: { env: 'SNOOPI_REQUEST_TIMEOUT_MS', flag: '--request-timeout-ms' },
  shutdownGraceMs: { env: 'SNOOPI_SHUTDOWN_GRACE_MS', flag: '--shutdown-grace-ms' },
  logLevel: { env: 'SNOOPI_LOG_LEVEL', flag: '--log-level' },
  requestLog: { env: 'SNOOPI_REQUEST_LOG', flag: '--request-log' },
};
