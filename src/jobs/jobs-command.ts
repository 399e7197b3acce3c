// `snoopi jobs list | watch ID | cancel ID`: the fine-tune jobs of a running service, through its admin API (the same
// HTTP calls any client makes). The URL and the token come from flags or the environment.
import { SettingsError } from '../config/settings.js';
import { formatDuration, formatJobLine, formatOutcome } from './progress-bar.js';
import type { Job } from './job-record.js';
import { readServerSentEvents } from './server-sent-events.js';

const DEFAULT_URL = 'http://127.0.0.1:8080';

interface Connection {
  url: string;
  token: string;
}

function parse(argv: readonly string[], env: NodeJS.ProcessEnv): { positional: string[]; connection: Connection } {
  const positional: string[] = [];
  let url = env.SNOOPI_URL || DEFAULT_URL;
  let token = env.SNOOPI_ADMIN_TOKEN ?? '';
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    const match = /^--(url|token)(?:=(.*))?$/s.exec(arg);
    if (match === null) {
      if (arg.startsWith('--')) throw new SettingsError(`Unknown flag ${arg} for snoopi jobs; see snoopi jobs --help`);
      positional.push(arg);
      continue;
    }
    const value = match[2] ?? argv[++index];
    if (value === undefined || value === '') throw new SettingsError(`--${match[1]} needs a value`);
    if (match[1] === 'url') url = value;
    else token = value;
  }
  if (token === '') throw new SettingsError('no admin token: set SNOOPI_ADMIN_TOKEN or pass --token');
  return { positional, connection: { url: url.replace(/\/+$/, ''), token } };
}

async function call(connection: Connection, method: string, path: string, accept = 'application/json'): Promise<Response> {
  const response = await fetch(`${connection.url}${path}`, { method, headers: { authorization: `Bearer ${connection.token}`, accept } }).catch(
    (error: Error) => {
      throw new Error(`cannot reach ${connection.url}: ${(error.cause as Error | undefined)?.message ?? error.message}`);
    },
  );
  if (!response.ok) {
    const body = (await response.json().catch(() => ({}))) as { code?: string; message?: string };
    throw new Error(`${method} ${path}: HTTP ${response.status} ${body.code ?? ''} ${body.message ?? ''}`.trim());
  }
  return response;
}

function listLine(job: Job): string {
  const age = formatDuration((Date.now() - Date.parse(job.created_at)) / 1000);
  return [job.id, job.status.padEnd(9), `${job.progress.step}/${job.progress.total}`.padEnd(11), job.spec.backbone.padEnd(9), job.spec.name, `${age} ago`].join('  ');
}

async function watch(connection: Connection, id: string, out: NodeJS.WriteStream): Promise<Job> {
  const response = await call(connection, 'GET', `/admin/jobs/${encodeURIComponent(id)}/events`, 'text/event-stream');
  // On a terminal the line is redrawn in place; in a log, a line is printed when the step or the status changes.
  const redraw = out.isTTY === true;
  let last: Job | undefined;
  let printed = '';
  for await (const event of readServerSentEvents(response.body!)) {
    if (event.event !== 'job') continue;
    const job = JSON.parse(event.data) as Job;
    const key = `${job.status} ${job.stage} ${job.progress.step}`;
    if (redraw) out.write(`\r${formatJobLine(job)}\x1b[K`);
    else if (key !== printed) out.write(`${formatJobLine(job)}\n`);
    printed = key;
    last = job;
  }
  if (redraw) out.write('\n');
  if (last === undefined) throw new Error(`the event stream of job ${id} ended without an event`);
  return last;
}

export const jobsCommand = {
  summary: 'list, watch (with a progress bar) and cancel the fine-tune jobs of a running service',
  usage: `snoopi jobs list [--url=URL] [--token=TOKEN]
snoopi jobs watch ID [--url=URL] [--token=TOKEN]
snoopi jobs cancel ID [--url=URL] [--token=TOKEN]

Talks to the admin API of a running service (GET /admin/jobs, GET /admin/jobs/{id}/events, DELETE /admin/jobs/{id}).
  --url=URL      the service (or SNOOPI_URL; default ${DEFAULT_URL})
  --token=TOKEN  its admin token (or SNOOPI_ADMIN_TOKEN, which keeps it out of the process list)

watch follows the job until it ends and exits 0 if it succeeded, 1 if it failed or was cancelled.`,
  async run(argv: string[]): Promise<void> {
    const [action, ...rest] = argv;
    const { positional, connection } = parse(rest, process.env);
    const needsId = action === 'watch' || action === 'cancel';
    if (action === undefined || !['list', 'watch', 'cancel'].includes(action)) {
      throw new SettingsError(`snoopi jobs takes list, watch ID or cancel ID, got ${JSON.stringify(action ?? '')}`);
    }
    if (positional.length !== (needsId ? 1 : 0)) throw new SettingsError(needsId ? `snoopi jobs ${action} takes one job id` : 'snoopi jobs list takes no arguments');
    const id = positional[0]!;
    if (action === 'list') {
      const { data } = (await (await call(connection, 'GET', '/admin/jobs')).json()) as { data: Job[] };
      process.stdout.write(data.length === 0 ? 'no jobs\n' : `${data.map(listLine).join('\n')}\n`);
    } else if (action === 'cancel') {
      const { job } = (await (await call(connection, 'DELETE', `/admin/jobs/${encodeURIComponent(id)}`)).json()) as { job: Job };
      process.stdout.write(`${formatOutcome(job)}\n`);
    } else {
      const job = await watch(connection, id, process.stdout);
      if (job.status !== 'succeeded') throw new Error(formatOutcome(job));
      process.stdout.write(`${formatOutcome(job)}\n`);
    }
  },
};
