// The images, checked without a Docker engine (none runs on the build machines): the Dockerfile linter from npm
// (dockerfile-utils, the Docker language server's validator: the builder's own syntax and flag rules) must report
// nothing, and the project's rules below (after hadolint's: pinned bases, apt and pip hygiene, pipefail, a non-root
// user, exec-form commands) must hold. Then the wiring: every COPY source exists and survives .dockerignore, every
// file the service reads at run time is in the image, the health check hits a real route, the port is the service's.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, relative } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../src/config/paths.js';
import { loadSettings, resolveSettings } from '../src/config/settings.js';
import { body, finalImage, globalArgs, parseDockerfile as parse, stages, words } from './helpers/dockerfile-image.js';

const run = promisify(execFile);
const linter = join(repoRoot, 'node_modules', 'dockerfile-utils', 'bin', 'dockerfile-utils');

interface Diagnostic {
  instructionLine: number;
  message: string;
  severity: string;
}

/** Runs the linter's command line on a file, as a developer would; its JSON output lists every problem. */
async function lint(path: string): Promise<Diagnostic[]> {
  const { stdout } = await run(process.execPath, [linter, 'lint', '--json', path]).catch((error: { stdout?: string }) => {
    if (typeof error.stdout === 'string' && error.stdout.startsWith('[')) return { stdout: error.stdout };
    throw error;
  });
  return JSON.parse(stdout) as Diagnostic[];
}

const images = [
  { dockerfile: 'Dockerfile', dockerignore: '.dockerignore' },
  { dockerfile: 'Dockerfile.trainer', dockerignore: 'Dockerfile.trainer.dockerignore' },
] as const;

// --- .dockerignore, as the builder reads it: patterns in order, the last one that matches a path or one of its
// parent folders decides; "!" re-includes. Only the forms this repository uses are supported (and checked).
function ignoreRules(name: string): { pattern: RegExp; include: boolean }[] {
  return readFileSync(join(repoRoot, name), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const include = line.startsWith('!');
      const glob = (include ? line.slice(1) : line).replace(/\/$/, '');
      assert.match(glob, /^(\*\*\/)?[\w.*/-]+$/, `${name}: unsupported pattern ${line}`);
      const source = glob
        .split('/')
        .map((part) => (part === '**' ? '.*' : part.replace(/\./g, '\\.').replace(/\*/g, '[^/]*')))
        .join('/')
        .replace(/^\.\*\//, '(?:.*/)?');
      return { pattern: new RegExp(`^${source}$`), include };
    });
}

function isExcluded(rules: { pattern: RegExp; include: boolean }[], path: string): boolean {
  const parts = path.split('/');
  let excluded = false;
  for (const rule of rules) {
    for (let i = 1; i <= parts.length; i++) {
      if (rule.pattern.test(parts.slice(0, i).join('/'))) {
        excluded = !rule.include;
        break;
      }
    }
  }
  return excluded;
}

function filesUnder(path: string): string[] {
  const absolute = join(repoRoot, path);
  if (!statSync(absolute).isDirectory()) return [path];
  return readdirSync(absolute, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(repoRoot, join(entry.parentPath, entry.name)));
}

// --- the linter ----------------------------------------------------------------------------------------------------

for (const { dockerfile } of images) {
  test(`${dockerfile}: the Dockerfile linter (dockerfile-utils) reports no problem`, async () => {
    assert.deepEqual(await lint(join(repoRoot, dockerfile)), []);
  });
}

test('the linter runs for real: it reports the problems of a broken Dockerfile', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-dockerfile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const broken = join(dir, 'Dockerfile');
  await writeFile(broken, 'FROM ubuntu:22.04\nrun true\nCOPY onlyone\nHEALTHCHECK --interval=3x CMD true\n');
  const diagnostics = await lint(broken);
  assert.deepEqual(
    diagnostics.map(({ instructionLine, severity }) => [instructionLine, severity]),
    [
      [1, 'warning'],
      [2, 'error'],
      [3, 'error'],
    ],
  );
});

// --- the project's rules -------------------------------------------------------------------------------------------

for (const { dockerfile } of images) {
  test(`${dockerfile}: pinned bases, apt/pip hygiene, pipefail, exec form, a non-root user`, () => {
    const parsed = parse(dockerfile);
    const args = globalArgs(parsed);
    const all = stages(parsed);
    const stageNames = new Set<string>();
    for (const stage of all) {
      const image = words(stage.from)[0]!;
      const resolved = image.replace(/^\$\{(\w+)\}$/, (_match, name: string) => args.get(name) ?? '');
      if (!stageNames.has(resolved)) {
        assert.match(resolved, /^[\w./-]+:[\w.-]+$/, `${dockerfile}: base image ${image} has no pinned tag`);
        assert.doesNotMatch(resolved, /:latest$/, `${dockerfile}: base image ${image} uses latest`);
      }
      if (stage.name !== null) stageNames.add(stage.name);
    }

    const instructions = parsed.getInstructions();
    const shell = instructions.find((instruction) => instruction.getKeyword() === 'SHELL');
    for (const runInstruction of instructions.filter((instruction) => instruction.getKeyword() === 'RUN')) {
      const script = body(runInstruction);
      const line = `${dockerfile}:${runInstruction.getRange().start.line + 1}`;
      if (/\|(?!\|)/.test(script.replace(/\|\|/g, ''))) {
        assert.ok(shell !== undefined && body(shell).includes('pipefail'), `${line}: a pipe without SHELL [..., "-o", "pipefail", ...]`);
      }
      if (/apt-get install/.test(script)) {
        assert.match(script, /apt-get install -y --no-install-recommends/, `${line}: apt-get install without -y --no-install-recommends`);
        assert.match(script, /rm -rf \/var\/lib\/apt\/lists\/\*/, `${line}: apt lists left in the layer`);
      }
      if (/pip install/.test(script)) {
        assert.match(script, /pip install --no-cache-dir/, `${line}: pip install without --no-cache-dir`);
        const packages = script.split(/pip install --no-cache-dir/)[1]!.split('&&')[0]!.trim().split(/\s+/);
        for (const spec of packages) assert.match(spec, /^[\w.-]+==[\w.]+$/, `${line}: unpinned pip package ${spec}`);
      }
    }

    const final = all.at(-1)!.instructions;
    const users = final.filter((instruction) => instruction.getKeyword() === 'USER');
    assert.ok(users.length > 0, `${dockerfile}: the final stage sets no USER`);
    assert.match(body(users.at(-1)!), /^[1-9]\d*:[1-9]\d*$/, `${dockerfile}: the final USER must be a numeric non-root uid:gid`);
    for (const keyword of ['CMD', 'ENTRYPOINT']) {
      for (const instruction of final.filter((candidate) => candidate.getKeyword() === keyword)) {
        assert.ok(body(instruction).trim().startsWith('['), `${dockerfile}: ${keyword} must use the exec (JSON) form`);
      }
    }
  });

  test(`${dockerfile}: every COPY source exists and is in the build context`, () => {
    const rules = images.find((image) => image.dockerfile === dockerfile)!.dockerignore;
    const ignore = ignoreRules(rules);
    const copies = parse(dockerfile).getCOPYs().filter((copy) => copy.getFromFlag() === null);
    assert.ok(copies.length > 0);
    for (const copy of copies) {
      for (const source of words(copy).filter((word) => !word.startsWith('--')).slice(0, -1)) {
        assert.ok(existsSync(join(repoRoot, source)), `${dockerfile}: COPY ${source}: no such file`);
        const kept = filesUnder(source).filter((file) => !isExcluded(ignore, file));
        assert.ok(kept.length > 0, `${dockerfile}: COPY ${source}: ${rules} excludes all of it`);
      }
    }
  });
}

test('.dockerignore keeps the models (packages and base checkpoints) and the Job template, not tests or build output', () => {
  const ignore = ignoreRules('.dockerignore');
  const verdicts = Object.fromEntries(
    [
      'models/shapes-fixture/model.json',
      'models/base/clip.pt',
      'k8s/base/trainer-job-template.yaml',
      'k8s/base/deployment.yaml',
      'src/cli.ts',
      'web/index.html',
      'test/cli.test.ts',
      'node_modules/x',
      'dist/src/cli.js',
      'trainer/distill.py',
      '.git/HEAD',
    ].map(
      (path) => [path, isExcluded(ignore, path) ? 'excluded' : 'kept'],
    ),
  );
  assert.deepEqual(verdicts, {
    'models/shapes-fixture/model.json': 'kept',
    'models/base/clip.pt': 'kept',
    'k8s/base/trainer-job-template.yaml': 'kept',
    'k8s/base/deployment.yaml': 'excluded',
    'src/cli.ts': 'kept',
    'web/index.html': 'kept',
    'test/cli.test.ts': 'excluded',
    'node_modules/x': 'excluded',
    'dist/src/cli.js': 'excluded',
    'trainer/distill.py': 'excluded',
    '.git/HEAD': 'excluded',
  });
  const trainer = ignoreRules('Dockerfile.trainer.dockerignore');
  assert.deepEqual(
    ['trainer/distill.py', 'models/base/clip.pt', 'trainer/tests/test_shapes.py', 'trainer/__pycache__/x.pyc', 'models/shapes-fixture/model.json', 'src/cli.ts'].map(
      (path) => isExcluded(trainer, path),
    ),
    [false, false, true, true, true, true],
  );
});

// --- the service image's wiring ------------------------------------------------------------------------------------

test('Dockerfile: CUDA 12 runtime base, onnxruntime-node with the CUDA 12 providers, a non-root runtime stage', () => {
  const parsed = parse('Dockerfile');
  assert.match(globalArgs(parsed).get('RUNTIME_BASE')!, /^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu22\.04$/);
  const [node, build, runtime] = stages(parsed);
  assert.deepEqual([node!.name, build!.name, runtime!.name], ['node', 'build', 'runtime']);
  assert.deepEqual(words(build!.from).slice(0, 1), ['node']);
  assert.deepEqual(words(runtime!.from).slice(0, 1), ['node']);

  // The install flag must be in the environment of `npm ci` (an ARG declared before it in the build stage).
  const npmCi = build!.instructions.findIndex((instruction) => instruction.getKeyword() === 'RUN' && body(instruction).includes('npm ci'));
  const installArg = build!.instructions.findIndex((instruction) => instruction.getKeyword() === 'ARG' && body(instruction) === 'ONNXRUNTIME_NODE_INSTALL=cuda12');
  assert.ok(installArg !== -1 && installArg < npmCi, 'ARG ONNXRUNTIME_NODE_INSTALL=cuda12 before npm ci');
  assert.match(body(build!.instructions[npmCi]!), /libonnxruntime_providers_cuda\.so/, 'the build checks that the CUDA provider arrived');
  assert.ok(build!.instructions.some((instruction) => body(instruction).includes('npm prune --omit=dev')));

  // The runtime stage runs what package.json's bin names, as `serve`.
  const packageJson = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { bin: { snoopi: string } };
  const entrypoint = runtime!.instructions.find((instruction) => instruction.getKeyword() === 'ENTRYPOINT')!;
  const cmd = runtime!.instructions.find((instruction) => instruction.getKeyword() === 'CMD')!;
  assert.deepEqual(JSON.parse(body(entrypoint)), ['node', packageJson.bin.snoopi]);
  assert.deepEqual(JSON.parse(body(cmd)), ['serve']);
});

test('Dockerfile: the health check calls /healthz, a route of the API, on the port the service listens on', () => {
  const runtime = stages(parse('Dockerfile')).at(-1)!.instructions;
  const healthchecks = runtime.filter((instruction) => instruction.getKeyword() === 'HEALTHCHECK');
  assert.equal(healthchecks.length, 1);
  const command = body(healthchecks[0]!);
  assert.match(command, /'\/healthz'/);
  const openapi = JSON.parse(readFileSync(join(repoRoot, 'openapi', 'openapi.json'), 'utf8')) as { paths: Record<string, { get?: unknown }> };
  assert.ok(openapi.paths['/healthz']?.get !== undefined);

  const port = resolveSettings().port;
  assert.equal(loadSettings([], finalImage(parse('Dockerfile')).env).port, port);
  const exposed = runtime.filter((instruction) => instruction.getKeyword() === 'EXPOSE').map(body);
  assert.deepEqual(exposed, [String(port)]);
});

test('Dockerfile: every path the service reads at run time is in the image; the one it writes is the user\'s', () => {
  const image = finalImage(parse('Dockerfile'));
  const inImage = (path: string) => posix.join(image.workdir, relative(repoRoot, path));

  // Files the code resolves under the repository root (join(repoRoot, ...)), except the settings' defaults (below)
  // and openapi/, which only the `snoopi openapi` developer command writes.
  const read = new Set<string>([inImage(join(repoRoot, 'package.json'))]);
  for (const file of filesUnder('src').filter((name) => name.endsWith('.ts') && name !== 'src/config/settings-schema.ts')) {
    for (const match of readFileSync(join(repoRoot, file), 'utf8').matchAll(/join\(repoRoot, ((?:'[^']+'(?:, )?)+)\)/g)) {
      const path = [...match[1]!.matchAll(/'([^']+)'/g)].map((part) => part[1]!);
      if (path[0] !== 'openapi') read.add(posix.join(image.workdir, ...path));
    }
  }
  // The settings as the image's environment makes them: the folders and files they name.
  const settings = loadSettings([], image.env);
  const path = (value: string) => (value.startsWith(repoRoot) ? inImage(value) : value);
  read.add(path(settings.modelsDir));
  read.add(path(settings.k8sJobTemplate));
  assert.deepEqual(
    [...read].sort(),
    ['/app/k8s/base/trainer-job-template.yaml', '/app/models', '/app/package.json', '/app/src/onnx/onnx.proto', '/app/web'],
  );
  for (const wanted of read) {
    assert.ok(
      image.copied.some((target) => wanted === target || wanted.startsWith(`${target}/`)),
      `${wanted} is read at run time but not copied into the runtime stage (copied: ${image.copied.join(', ')})`,
    );
  }
  const jobsDir = path(settings.jobsDir);
  assert.ok(
    image.runs.some((script) => script.includes(`install -d -o ${image.uid} -g ${image.gid} -m 0750 ${jobsDir}`)),
    `the job records' folder ${jobsDir} must be created writable by ${image.uid}:${image.gid}`,
  );
});

test('Dockerfile.trainer: a CUDA 12 PyTorch base, the trainer and its base checkpoints', () => {
  const parsed = parse('Dockerfile.trainer');
  assert.match(globalArgs(parsed).get('TORCH_IMAGE')!, /^pytorch\/pytorch:2\.\d+\.\d+-cuda12\.\d+-cudnn9-runtime$/);
  const copies = parsed.getCOPYs().map((copy) => words(copy));
  assert.deepEqual(copies, [
    ['trainer', './trainer'],
    ['models/base', './models/base'],
  ]);
});
