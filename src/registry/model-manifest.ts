// model.json, the manifest of a model package (docs/contracts.md): its TypeBox schema, validation with messages
// that name the file and the field, and the check of every listed file's size and sha256.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** A model's id, also its package's folder name and the name a fine-tune job gives its model; trainer/distill.py's
 * ID_PATTERN is the same (test/jobs-trainer-limits.test.ts). */
export const MODEL_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';

const PositiveInteger = Type.Integer({ minimum: 1 });
const TokenId = Type.Integer({ minimum: 0 });
const Scale = Type.Number({ minimum: 0 });

export const PackageFileSchema = Type.Object({
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  bytes: Type.Integer({ minimum: 0 }),
});

export const ModelManifestSchema = Type.Object({
  format_version: Type.Literal(1),
  id: Type.String({ pattern: MODEL_ID_PATTERN }),
  display_name: Type.String({ minLength: 1 }),
  backbone: Type.String({ minLength: 1 }),
  parameterization: Type.Union([Type.Literal('eps'), Type.Literal('v'), Type.Literal('x0')]),
  // imported: a student made elsewhere, brought in by `snoopi import` (src/importer/optimum-import.ts)
  method: Type.Union([Type.Literal('pg-sb'), Type.Literal('sb'), Type.Literal('teacher-init'), Type.Literal('imported')]),
  teacher: Type.String(),
  timestep: Type.Integer({ minimum: 0 }),
  image: Type.Object({ width: PositiveInteger, height: PositiveInteger }),
  latent: Type.Object({ channels: PositiveInteger, height: PositiveInteger, width: PositiveInteger }),
  text: Type.Object({
    max_length: Type.Integer({ minimum: 2 }),
    hidden_size: PositiveInteger,
    pad_token_id: TokenId,
    bos_token_id: TokenId,
    eos_token_id: TokenId,
  }),
  nasa: Type.Object({ default_scale: Scale, max_scale: Scale }),
  files: Type.Record(Type.String(), PackageFileSchema),
  training: Type.Object({
    recipe: Type.Record(Type.String(), Type.Unknown()),
    steps: Type.Integer({ minimum: 0 }),
    seed: Type.Integer(),
    git_commit: Type.String(),
    metrics: Type.Record(Type.String(), Type.Unknown()),
  }),
});

export type ModelManifest = Static<typeof ModelManifestSchema>;

/** The files every package must list (and therefore hold). */
export const REQUIRED_FILES = ['text_encoder.onnx', 'generator.onnx', 'tokenizer/vocab.json', 'tokenizer/merges.txt'] as const;

export const MANIFEST_FILE = 'model.json';

/** A manifest or package that fails its checks; `problems` holds one line per failed check. */
export class ManifestError extends Error {
  constructor(
    readonly path: string,
    readonly problems: string[],
  ) {
    super(`${path}: ${problems.join('; ')}`);
    this.name = 'ManifestError';
  }
}

/** Returns every problem of `data` as a manifest: schema violations, then the rules the schema cannot say. */
export function manifestProblems(data: unknown): string[] {
  if (!Value.Check(ModelManifestSchema, data)) {
    // TypeBox reports a missing property twice (required, then wrong type): keep the first message per field.
    const byPath = new Map<string, string>();
    for (const error of Value.Errors(ModelManifestSchema, data)) {
      const path = error.path || '/';
      if (!byPath.has(path)) byPath.set(path, `${path}: ${error.message}`);
    }
    return [...byPath.values()];
  }
  const problems: string[] = [];
  if (data.nasa.default_scale > data.nasa.max_scale) {
    problems.push(`/nasa/default_scale: ${data.nasa.default_scale} is above max_scale ${data.nasa.max_scale}`);
  }
  for (const file of REQUIRED_FILES) {
    if (!(file in data.files)) problems.push(`/files: ${file} is missing`);
  }
  for (const file of Object.keys(data.files)) {
    if (isAbsolute(file) || normalize(file).split(sep).includes('..')) problems.push(`/files: ${file} leaves the package folder`);
  }
  return problems;
}

export function validateManifest(data: unknown, path: string): ModelManifest {
  const problems = manifestProblems(data);
  if (problems.length > 0) throw new ManifestError(path, problems);
  return data as ModelManifest;
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Checks that every file the manifest lists exists with the listed size and sha256. */
export async function verifyPackageFiles(dir: string, manifest: ModelManifest): Promise<void> {
  const checks = Object.entries(manifest.files).map(async ([file, expected]) => {
    const path = join(dir, file);
    try {
      const { size } = await stat(path);
      if (size !== expected.bytes) return `${file}: ${size} bytes, model.json says ${expected.bytes}`;
      const sha256 = await sha256OfFile(path);
      return sha256 === expected.sha256 ? undefined : `${file}: sha256 ${sha256}, model.json says ${expected.sha256}`;
    } catch (error) {
      return `${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (error as Error).message}`;
    }
  });
  const problems = (await Promise.all(checks)).filter((problem): problem is string => problem !== undefined);
  if (problems.length > 0) throw new ManifestError(join(dir, MANIFEST_FILE), problems);
}

export interface LoadManifestOptions {
  /** Check sizes and sha256 of the listed files (reads every byte of the package). */
  verifyFiles: boolean;
}

/** Reads and validates `dir`/model.json; the package's id must equal its folder name. */
export async function loadManifest(dir: string, folderName: string, options: LoadManifestOptions): Promise<ModelManifest> {
  const path = join(dir, MANIFEST_FILE);
  let data: unknown;
  try {
    data = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new ManifestError(path, [error instanceof SyntaxError ? `not valid JSON: ${error.message}` : (error as Error).message]);
  }
  const manifest = validateManifest(data, path);
  if (manifest.id !== folderName) throw new ManifestError(path, [`/id: ${manifest.id} differs from the folder name ${folderName}`]);
  if (options.verifyFiles) await verifyPackageFiles(dir, manifest);
  return manifest;
}
