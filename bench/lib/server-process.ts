// The service under test in a child process (`node dist/src/cli.js serve`), so that the load generator and the
// server never share an event loop or a V8 heap. Also reads the child's RSS and CPU time from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from '../../src/config/paths.js';

export interface ServerOptions {
  /** Flags after `serve` (settings); --host and --port are added here. */
  flags: readonly string[];
  /** The server's stdout and stderr go to this file. */
  logFile: string;
  /** Node flags for the child, e.g. ['--cpu-prof', '--cpu-prof-dir=...']. */
  nodeFlags?: readonly string[];
  readyTimeoutMs?: number;
}

export interface ProcessUsage {
  /** User + system CPU seconds of the whole process (every thread), from /proc/<pid>/stat. */
  cpuSeconds: number;
  rssBytes: number;
}

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
// /proc/<pid>/stat counts CPU time in clock ticks; 100 per second on every Linux this runs on (getconf CLK_TCK).
const CLOCK_TICKS = 100;

/** A free TCP port on loopback (another process could take it before the server binds; unlikely on a bench box). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('could not find a free port');
  return address.port;
}

export class ServerProcess {
  private exited: Promise<number | null>;

  private constructor(
    readonly url: string,
    readonly pid: number,
    private readonly child: ChildProcess,
    log: WriteStream,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code) => {
        log.end();
        resolve(code);
      }),
    );
  }

  /** Starts the server and waits until /readyz answers 200 (the active model loaded and warmed). */
  static async start(options: ServerOptions): Promise<ServerProcess> {
    const port = await freePort();
    const { logFile } = options;
    await mkdir(join(logFile, '..'), { recursive: true });
    const log = createWriteStream(logFile);
    await new Promise((resolve) => log.once('open', resolve));
    const child = spawn(
      process.execPath,
      [...(options.nodeFlags ?? []), cli, 'serve', '--host=127.0.0.1', `--port=${port}`, ...options.flags],
      { cwd: repoRoot, stdio: ['ignore', log, log] },
    );
    const server = new ServerProcess(`http://127.0.0.1:${port}`, child.pid!, child, log);
    const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
    let exitCode: number | null | undefined;
    void server.exited.then((code) => (exitCode = code));
    while (Date.now() < deadline) {
      if (exitCode !== undefined) throw new Error(`the server exited with code ${exitCode} before it was ready; see ${logFile}`);
      const status = await fetch(`${server.url}/readyz`).then(
        (response) => response.arrayBuffer().then(() => response.status),
        () => 0,
      );
      if (status === 200) return server;
      await sleep(100);
    }
    await server.stop();
    throw new Error(`the server was not ready within ${options.readyTimeoutMs ?? 60_000} ms; see ${logFile}`);
  }

  async usage(): Promise<ProcessUsage> {
    const [stat, status] = await Promise.all([readFile(`/proc/${this.pid}/stat`, 'utf8'), readFile(`/proc/${this.pid}/status`, 'utf8')]);
    // Fields after the command name (which may hold spaces, hence the last ')'): utime and stime are fields 14, 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const rssKiB = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
    return { cpuSeconds: ticks / CLOCK_TICKS, rssBytes: rssKiB * 1024 };
  }

  async metrics(): Promise<string> {
    const response = await fetch(`${this.url}/metrics`);
    if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`);
    return response.text();
  }

  /** SIGTERM (graceful shutdown; a --cpu-prof child writes its profile on exit), SIGKILL after `graceMs`. */
  async stop(graceMs = 20_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}
