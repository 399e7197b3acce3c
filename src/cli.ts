#!/usr/bin/env node
// The `snoopi` program: one binary, one sub-command per tool. Each sub-command has --help; a bad setting or an
// unknown flag stops it with a message naming the setting (exit 2).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { repoRoot, packageInfo } from './config/paths.js';
import { SettingsError, loadSettings, settingsHelp } from './config/settings.js';
import { importCommand, nasaPatchCommand } from './importer/commands.js';
import { jobsCommand } from './jobs/jobs-command.js';

interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<void>;
}

const defaultOpenApiPath = join(repoRoot, 'openapi', 'openapi.json');

const commands: Record<string, Command> = {
  serve: {
    summary: 'serve the models of the registry over HTTP (POST /generate, /models, /healthz, /readyz, /metrics, /docs)',
    usage: `snoopi serve [flags]

Serves the active model of the registry (SNOOPI_MODELS_DIR). Every setting is an environment variable and a flag;
a flag wins over the environment. SIGTERM/SIGINT shut down gracefully: /readyz turns 503, new work is refused,
in-flight requests finish, then the models are released, and the exit status is 0. A server that cannot listen (port
in use, unresolvable host) exits 1 at once; one whose active model cannot load (or with no model package) exits 1
after shutting down.

Flags and environment:
${settingsHelp()}`,
    async run(argv) {
      const settings = loadSettings(argv, process.env);
      const { serve } = await import('./serve.js');
      await serve(settings);
    },
  },
  openapi: {
    summary: 'write the OpenAPI document generated from the route schemas (openapi/openapi.json)',
    usage: `snoopi openapi [--out=<path>]

Writes the OpenAPI 3 document of the HTTP API, generated from the route schemas, to <path>
(default: ${defaultOpenApiPath}). The output is deterministic; test/openapi.test.ts fails when the checked-in
file differs from it.`,
    async run(argv) {
      let out = defaultOpenApiPath;
      for (const arg of argv) {
        if (arg.startsWith('--out=') && arg.length > '--out='.length) out = arg.slice('--out='.length);
        else throw new SettingsError(`Unknown argument ${JSON.stringify(arg)}; snoopi openapi takes only --out=<path>`);
      }
      const { renderOpenApiDocument } = await import('./http/openapi-document.js');
      await mkdir(dirname(out), { recursive: true });
      await writeFile(out, await renderOpenApiDocument());
      process.stdout.write(`wrote ${out}\n`);
    },
  },
  'nasa-patch': nasaPatchCommand,
  import: importCommand,
  jobs: jobsCommand,
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const list = Object.entries(commands).map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`);
  return `snoopi ${packageInfo.version}: ${packageInfo.description}

Usage: snoopi <command> [flags]

Commands:
${list.join('\n')}

Run \`snoopi <command> --help\` for a command's flags.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${mainHelp()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (command === undefined) {
    process.stderr.write(`snoopi: unknown command ${JSON.stringify(name)}\n\n${mainHelp()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  try {
    await command.run(rest);
    return 0;
  } catch (err) {
    process.stderr.write(`snoopi ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof SettingsError ? 2 : 1;
  }
}

const exitCode = await main(process.argv.slice(2));
// A failed command exits at once: nothing it started (a model loading in worker threads, a timer) may keep a failed
// process alive, e.g. a server that could not listen, which a Kubernetes pod would otherwise show as running.
if (exitCode === 0) process.exitCode = 0;
else process.exit(exitCode);
