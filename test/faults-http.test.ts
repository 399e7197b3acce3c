// Faults a production server must survive, through real sockets and real files (issue 29).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../src/config/paths.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');

// 3. A server that cannot serve exits non-zero at once.

interface Exit {
  code: number | null;
  stderr: string;
  /** The msg of every log line on stdout. */
  messages: string[];
}

function serveUntilExit(args: string[]): Promise<Exit> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'serve', '--log-level=info', ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      const messages = stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { msg: string }).msg);
      resolve({ code: error === null ? 0 : (error as { code?: number }).code ?? null, stderr, messages });
    });
  });
}

test('serve exits 1 at once when its port is in use, before the model is ready', async (t) => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.after(() => taken.close());
  const { port } = taken.address() as AddressInfo;
  const exit = await serveUntilExit([`--port=${port}`, '--host=127.0.0.1']);
  assert.equal(exit.code, 1);
  assert.equal(exit.stderr, `snoopi serve: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`);
  assert.ok(!exit.messages.some((message) => message.startsWith('ready')), exit.messages.join('\n'));
});

test('serve exits 1 at once when HOST does not resolve', async () => {
  const exit = await serveUntilExit(['--port=0', '--host=no-such-host.invalid']);
  assert.equal(exit.code, 1);
  assert.equal(exit.stderr, 'snoopi serve: getaddrinfo ENOTFOUND no-such-host.invalid\n');
  assert.ok(!exit.messages.some((message) => message.startsWith('ready')), exit.messages.join('\n'));
});

test('serve exits 1 after a fatal log line when the models folder holds no package', async (t) => {
  const modelsDir = await mkdtemp(join(tmpdir(), 'snoopi-empty-models-'));
  t.after(() => rm(modelsDir, { recursive: true, force: true }));
  const exit = await serveUntilExit(['--port=0', '--host=127.0.0.1', `--models-dir=${modelsDir}`]);
  assert.equal(exit.code, 1);
  assert.equal(exit.stderr, 'snoopi serve: The service is not ready: no model package is registered\n');
  assert.deepEqual(exit.messages.slice(-3), ['the active model failed to load; shutting down', 'shutting down: refusing new work', 'shut down']);
});
