import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../src/config/paths.js';
import { SettingsError, loadSettings, resolveSettings } from '../src/config/settings.js';
import { INTRA_OP_WAITS, intraOpWaitEntries } from '../src/engine/intra-op-wait.js';
import { serviceOptions } from '../src/serve.js';

const defaults = {
  port: 8080,
  host: '0.0.0.0',
  modelsDir: join(repoRoot, 'models'),
  apiKeyRequestsPerMinute: 60,
  apiKeyImagesPerMinute: 240,
  imageUrlTtlMs: 600000,
  imageUrlBytes: 67108864,
  jobsDir: join(repoRoot, 'runs', 'jobs'),
  jobRunner: 'local',
  maxRunningJobs: 1,
  jobCancelGraceMs: 30000,
  trainerPython: '/usr/bin/python3',
  k8sJobTemplate: join(repoRoot, 'k8s', 'base', 'trainer-job-template.yaml'),
  k8sPollMs: 5000,
  executionProvider: 'cpu',
  intraOpThreads: 2,
  intraOpWait: 'spin-in-call',
  maxBatch: 16,
  maxLoadedModels: 4,
  maxQueueRows: 256,
  deadlineMs: 10000,
  cacheBytes: 67108864,
  bodyLimit: 65536,
  requestTimeoutMs: 30000,
  shutdownGraceMs: 10000,
  logLevel: 'info',
  requestLog: 'completed',
};

test('without flags or environment every setting has its default', () => {
  assert.deepEqual(loadSettings([], {}), defaults);
  assert.deepEqual(resolveSettings(), defaults);
});

test('the environment sets each setting; a flag wins over it', () => {
  const env = {
    PORT: '9000',
    HOST: '127.0.0.1',
    SNOOPI_MODELS_DIR: '/srv/models',
    SNOOPI_ACTIVE_MODEL: 'shapes-unet-eps-pgsb',
    SNOOPI_ADMIN_TOKEN: 'a-token-of-16-chars',
    SNOOPI_API_KEYS: '/srv/api-keys.txt',
    SNOOPI_API_KEY_REQUESTS_PER_MINUTE: '30',
    SNOOPI_API_KEY_IMAGES_PER_MINUTE: '100',
    SNOOPI_IMAGE_URL_TTL_MS: '60000',
    SNOOPI_IMAGE_URL_BYTES: '8388608',
    SNOOPI_JOBS_DIR: '/srv/jobs',
    SNOOPI_BASE_MODELS_DIR: '/srv/base',
    SNOOPI_JOB_RUNNER: 'kubernetes',
    SNOOPI_MAX_RUNNING_JOBS: '2',
    SNOOPI_JOB_CANCEL_GRACE_MS: '5000',
    SNOOPI_TRAINER_PYTHON: '/opt/venv/bin/python',
    SNOOPI_TRAINER_CONFIG: '/srv/trainer.json',
    SNOOPI_K8S_NAMESPACE: 'snoopi',
    SNOOPI_K8S_JOB_TEMPLATE: '/app/k8s/job.yaml',
    SNOOPI_K8S_POLL_MS: '1000',
    SNOOPI_EXECUTION_PROVIDER: 'cuda',
    SNOOPI_INTRA_OP_THREADS: '2',
    SNOOPI_INTRA_OP_WAIT: 'spin',
    SNOOPI_MAX_BATCH: '32',
    SNOOPI_MAX_LOADED_MODELS: '3',
    SNOOPI_MAX_QUEUE_ROWS: '64',
    SNOOPI_DEADLINE_MS: '2500',
    SNOOPI_CACHE_BYTES: '1048576',
    SNOOPI_BODY_LIMIT: '2048',
    SNOOPI_REQUEST_TIMEOUT_MS: '5000',
    SNOOPI_SHUTDOWN_GRACE_MS: '500',
    SNOOPI_LOG_LEVEL: 'warn',
    SNOOPI_REQUEST_LOG: 'errors',
  };
  const fromEnv = {
    port: 9000,
    host: '127.0.0.1',
    modelsDir: '/srv/models',
    activeModel: 'shapes-unet-eps-pgsb',
    adminToken: 'a-token-of-16-chars',
    apiKeys: '/srv/api-keys.txt',
    apiKeyRequestsPerMinute: 30,
    apiKeyImagesPerMinute: 100,
    imageUrlTtlMs: 60000,
    imageUrlBytes: 8388608,
    jobsDir: '/srv/jobs',
    baseModelsDir: '/srv/base',
    jobRunner: 'kubernetes',
    maxRunningJobs: 2,
    jobCancelGraceMs: 5000,
    trainerPython: '/opt/venv/bin/python',
    trainerConfig: '/srv/trainer.json',
    k8sNamespace: 'snoopi',
    k8sJobTemplate: '/app/k8s/job.yaml',
    k8sPollMs: 1000,
    executionProvider: 'cuda',
    intraOpThreads: 2,
    intraOpWait: 'spin',
    maxBatch: 32,
    maxLoadedModels: 3,
    maxQueueRows: 64,
    deadlineMs: 2500,
    cacheBytes: 1048576,
    bodyLimit: 2048,
    requestTimeoutMs: 5000,
    shutdownGraceMs: 500,
    logLevel: 'warn',
    requestLog: 'errors',
  };
  assert.deepEqual(loadSettings([], env), fromEnv);
  assert.deepEqual(loadSettings(['--port=9100', '--max-batch', '4', '--log-level=debug'], env), {
    ...fromEnv,
    port: 9100,
    maxBatch: 4,
    logLevel: 'debug',
  });
});

test('a bad value stops the start with a message naming the setting and its source', () => {
  const cases: [string[], Record<string, string>, string][] = [
    [[], { PORT: 'eighty' }, 'Invalid setting PORT (environment): expected an integer, got "eighty"'],
    [['--port=70000'], {}, 'Invalid setting --port: must be between 0 and 65535, got 70000'],
    [['--max-batch=0'], {}, 'Invalid setting --max-batch: must be between 1 and 1024, got 0'],
    [[], { SNOOPI_MAX_QUEUE_ROWS: '1.5' }, 'Invalid setting SNOOPI_MAX_QUEUE_ROWS (environment): expected an integer, got "1.5"'],
    [['--execution-provider=tpu'], {}, 'Invalid setting --execution-provider: must be one of cpu, cuda, got "tpu"'],
    [[], { SNOOPI_LOG_LEVEL: 'loud' }, 'Invalid setting SNOOPI_LOG_LEVEL (environment): must be one of fatal, error, warn, info, debug, trace, silent, got "loud"'],
    [[], { SNOOPI_ADMIN_TOKEN: 'short' }, 'Invalid setting SNOOPI_ADMIN_TOKEN (environment): must have at least 16 characters, got "short"'],
    [['--deadline-ms=-5'], {}, 'Invalid setting --deadline-ms: must be between 1 and 3600000, got -5'],
    [['--body-limit=10'], {}, 'Invalid setting --body-limit: must be between 1024 and 16777216, got 10'],
    [[], { SNOOPI_REQUEST_TIMEOUT_MS: '0' }, 'Invalid setting SNOOPI_REQUEST_TIMEOUT_MS (environment): must be between 500 and 600000, got 0'],
    [['--prot=1'], {}, 'Unknown argument "--prot=1"; known flags: --port, --host, --models-dir, --active-model, --admin-token, --api-keys, --api-key-requests-per-minute, --api-key-images-per-minute, --image-url-ttl-ms, --image-url-bytes, --jobs-dir, --base-models-dir, --job-runner, --max-running-jobs, --job-cancel-grace-ms, --trainer-python, --trainer-config, --k8s-namespace, --k8s-job-template, --k8s-poll-ms, --execution-provider, --intra-op-threads, --intra-op-wait, --max-batch, --max-loaded-models, --max-queue-rows, --deadline-ms, --cache-bytes, --body-limit, --request-timeout-ms, --shutdown-grace-ms, --log-level, --request-log'],
    [['--port'], {}, 'Missing value for --port'],
    [['--job-runner=slurm'], {}, 'Invalid setting --job-runner: must be one of local, kubernetes, got "slurm"'],
    [[], { SNOOPI_INTRA_OP_WAIT: 'true' }, 'Invalid setting SNOOPI_INTRA_OP_WAIT (environment): must be one of block, spin-in-call, spin, got "true"'],
    [[], { SNOOPI_MAX_RUNNING_JOBS: '0' }, 'Invalid setting SNOOPI_MAX_RUNNING_JOBS (environment): must be between 1 and 64, got 0'],
  ];
  for (const [argv, env, message] of cases) {
    assert.throws(() => loadSettings(argv, env), (err: unknown) => {
      assert.ok(err instanceof SettingsError);
      assert.equal(err.message, message);
      return true;
    });
  }
});

test('overrides given in code are validated too', () => {
  assert.throws(() => resolveSettings({ maxBatch: 0 }), {
    name: 'SettingsError',
    message: 'Invalid setting maxBatch (SNOOPI_MAX_BATCH / --max-batch): must be between 1 and 1024, got 0',
  });
});

test('the engine options follow the settings: intra-op threads and how idle threads wait', () => {
  const defaults = serviceOptions(resolveSettings());
  const spinning = serviceOptions(resolveSettings({ intraOpWait: 'spin', intraOpThreads: 1 }));
  assert.deepEqual([defaults.intraOpThreads, defaults.intraOpWait], [2, 'spin-in-call']);
  assert.deepEqual([spinning.intraOpThreads, spinning.intraOpWait], [1, 'spin']);
});

test('each intra-op wait mode is the onnxruntime session config that means it', () => {
  assert.deepEqual(
    Object.fromEntries(INTRA_OP_WAITS.map((wait) => [wait, intraOpWaitEntries(wait)])),
    {
      block: { intra_op: { allow_spinning: '0' }, force_spinning_stop: '0' },
      'spin-in-call': { intra_op: { allow_spinning: '1' }, force_spinning_stop: '1' },
      spin: { intra_op: { allow_spinning: '1' }, force_spinning_stop: '0' },
    },
  );
});
