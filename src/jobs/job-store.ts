// Job records on disk, a folder per job under the jobs root:
//   spec.json        the request as validated (written once)
//   status.json      the job as the API shows it (job-record.ts), replaced atomically on every change
//   progress.jsonl   every progress line of the trainer
//   trainer.log      the trainer's human messages (stderr)
// plus what the runner puts there (trainer-config.json and run/ for the local trainer). They outlive the service.
import { appendFile, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Job } from './job-record.js';
import { JOB_ID_PATTERN } from './job-record.js';
import type { TrainerProgress } from './trainer-output.js';

export const JOB_FILES = { spec: 'spec.json', status: 'status.json', progress: 'progress.jsonl', log: 'trainer.log' } as const;

const jobIdPattern = new RegExp(JOB_ID_PATTERN);

export interface StoreLog {
  warn(details: object, message: string): void;
}

export class JobStore {
  /** Per job, the last queued write: writes of one job land in order. */
  private readonly writes = new Map<string, Promise<void>>();

  constructor(
    readonly root: string,
    private readonly log: StoreLog,
  ) {}

  jobDir(id: string): string {
    return join(this.root, id);
  }

  async create(job: Job): Promise<void> {
    await mkdir(this.jobDir(job.id), { recursive: true });
    await writeFile(join(this.jobDir(job.id), JOB_FILES.spec), `${JSON.stringify(job.spec, null, 2)}\n`);
    await this.save(job);
  }

  /** Replaces status.json (write a temporary file, then rename: a crash leaves the old or the new one, whole). */
  save(job: Job): Promise<void> {
    const path = join(this.jobDir(job.id), JOB_FILES.status);
    const text = `${JSON.stringify(job, null, 2)}\n`;
    return this.queue(job.id, async () => {
      await writeFile(`${path}.tmp`, text);
      await rename(`${path}.tmp`, path);
    });
  }

  appendProgress(id: string, record: TrainerProgress): Promise<void> {
    return this.queue(id, () => appendFile(join(this.jobDir(id), JOB_FILES.progress), `${JSON.stringify(record)}\n`));
  }

  appendLog(id: string, text: string): Promise<void> {
    return this.queue(id, () => appendFile(join(this.jobDir(id), JOB_FILES.log), `${text}\n`));
  }

  /** Every readable record, oldest first; a folder without a valid status.json is skipped with a warning. */
  async loadAll(): Promise<Job[]> {
    await mkdir(this.root, { recursive: true });
    const folders = (await readdir(this.root, { withFileTypes: true })).filter((entry) => entry.isDirectory() && jobIdPattern.test(entry.name));
    const jobs: Job[] = [];
    for (const folder of folders) {
      const path = join(this.root, folder.name, JOB_FILES.status);
      try {
        const job = JSON.parse(await readFile(path, 'utf8')) as Job;
        if (job.id !== folder.name) throw new Error(`it holds job ${JSON.stringify(job.id)}`);
        jobs.push(job);
      } catch (error) {
        this.log.warn({ path, error: (error as Error).message }, 'skipping an unreadable job record');
      }
    }
    return jobs.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
  }

  /** Resolves when every write queued so far has landed. */
  async flush(): Promise<void> {
    await Promise.all(this.writes.values());
  }

  private queue(id: string, write: () => Promise<void>): Promise<void> {
    const next = (this.writes.get(id) ?? Promise.resolve()).then(write);
    const settled = next.catch((error: Error) => this.log.warn({ job: id, error: error.message }, 'writing a job record failed'));
    this.writes.set(id, settled);
    void settled.then(() => {
      if (this.writes.get(id) === settled) this.writes.delete(id);
    });
    return settled;
  }
}
