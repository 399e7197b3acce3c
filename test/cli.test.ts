// The `snoopi` program as a user runs it: help, setting errors, the openapi command, and serve with SIGTERM.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../src/config/paths.js';
import { settingSources } from '../src/config/settings.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');

async function snoopi(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

test('snoopi --help lists the sub-commands; each has its own --help', async () => {
  const help = await snoopi(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: snoopi <command> \[flags\]$/m);
  assert.match(help.stdout, /^ {2}serve +serve the models of the registry over HTTP/m);
  assert.match(help.stdout, /^ {2}openapi +write the OpenAPI document/m);

  const serve = await snoopi(['serve', '--help']);
  assert.equal(serve.code, 0);
  for (const { env, flag } of Object.values(settingSources)) {
    assert.match(serve.stdout, new RegExp(`^ {2}${flag}=<value> +${env} `, 'm'), flag);
  }
  const openapi = await snoopi(['openapi', '--help']);
  assert.equal(openapi.code, 0);
  assert.match(openapi.stdout, /^snoopi openapi \[--out=<path>\]$/m);
});

test('no command or an unknown one exits 2 with the list of commands', async () => {
  const none = await snoopi([]);
  assert.equal(none.code, 2);
  assert.match(none.stdout, /Commands:/);
  const unknown = await snoopi(['srve']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^snoopi: unknown command "srve"$/m);
});

test('serve refuses a bad setting at start, naming it', async () => {
  const flag = await snoopi(['serve', '--max-batch=0']);
  assert.deepEqual(flag, { code: 2, stdout: '', stderr: 'snoopi serve: Invalid setting --max-batch: must be between 1 and 1024, got 0\n' });
  const env = await snoopi(['serve'], { SNOOPI_EXECUTION_PROVIDER: 'tpu' });
  assert.deepEqual(env, {
    code: 2,
    stdout: '',
    stderr: 'snoopi serve: Invalid setting SNOOPI_EXECUTION_PROVIDER (environment): must be one of cpu, cuda, got "tpu"\n',
  });
});

test('snoopi openapi --out writes the checked-in document', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-openapi-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'openapi.json');
  const result = await snoopi(['openapi', `--out=${out}`]);
  assert.deepEqual(result, { code: 0, stdout: `wrote ${out}\n`, stderr: '' });
  assert.equal(await readFile(out, 'utf8'), await readFile(join(repoRoot, 'openapi', 'openapi.json'), 'utf8'));
});

test('serve: listens, becomes ready, generates, and exits 0 after SIGTERM', async (t) => {
  const child = spawn(process.execPath, [cli, 'serve', '--port=0', '--host=127.0.0.1', '--log-level=info'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const messages: string[] = [];
  const listening = new Promise<string>((resolve) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const { msg } = JSON.parse(line) as { msg: string };
      messages.push(msg);
      const match = /^Server listening at (http:\/\/127\.0\.0\.1:\d+)$/.exec(msg);
      if (match) resolve(match[1]!);
    });
  });
  const url = await listening;
  for (let ready = false; !ready; await new Promise((resolve) => setTimeout(resolve, 50))) {
    ready = (await fetch(`${url}/readyz`)).status === 200;
  }
  const response = await fetch(`${url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":"a red circle"}' });
  assert.equal(response.status, 200);
  assert.equal(((await response.json()) as { images: unknown[] }).images.length, 1);

  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.ok(messages.includes('shutting down: refusing new work'), messages.join('\n'));
  assert.equal(messages.at(-1), 'shut down');
});
