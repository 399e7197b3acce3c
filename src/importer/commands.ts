// The `snoopi nasa-patch` and `snoopi import` sub-commands: flags in, a short report out. Bad flags raise
// SettingsError (exit 2); a graph or folder that cannot be patched or imported raises an Error naming why (exit 1).
import { performance } from 'node:perf_hooks';
import { dirname, join } from 'node:path';
import { SettingsError } from '../config/settings.js';

interface FlagSpec {
  /** Takes a value (--name=value or --name value); otherwise a switch. */
  value: boolean;
}

interface ParsedArguments {
  positional: string[];
  flags: Map<string, string>;
}

function parseArguments(command: string, argv: readonly string[], specs: Readonly<Record<string, FlagSpec>>): ParsedArguments {
  const positional: string[] = [];
  const flags = new Map<string, string>();
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const spec = specs[name];
    if (spec === undefined) throw new SettingsError(`Unknown flag --${name} for snoopi ${command}; see snoopi ${command} --help`);
    let value = inline;
    if (value === undefined && spec.value) {
      value = argv[index + 1];
      index += 1;
    }
    if (spec.value && (value === undefined || value === '')) throw new SettingsError(`--${name} needs a value`);
    flags.set(name, value ?? '');
  }
  return { positional, flags };
}

function numberFlag(flags: Map<string, string>, name: string, check: (value: number) => boolean, expected: string): number | undefined {
  const text = flags.get(name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || !check(value)) throw new SettingsError(`--${name} must be ${expected}, got ${JSON.stringify(text)}`);
  return value;
}

const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(2)} s`;

export const nasaPatchCommand = {
  summary: 'add NASA negative-prompt branches to the cross-attentions of an ONNX denoiser graph',
  usage: `snoopi nasa-patch IN.onnx OUT.onnx [--input=encoder_hidden_states] [--expect=N]

Finds every cross-attention of IN.onnx (an attention whose keys and values are computed from the --input graph
input alone: MatMul -> Softmax -> MatMul exports with the scale after the score MatMul or on Q and K^T, and
com.microsoft MultiHeadAttention), clones its K/V cone onto a new input negative_encoder_hidden_states (same type as
--input) and its score -> softmax -> AV chain, and feeds Z+ - nasa_scale[b] * Z- to its output projection; nasa_scale
is a new float32 [B] input. At nasa_scale 0 the graph computes what IN.onnx computes.

Refuses (exit 1) a graph with no cross-attention, one whose count differs from --expect=N (default: the count a
config.json beside IN.onnx gives: cross_attention_layers, or a diffusers UNet2DConditionModel's blocks), and one whose
keys and values mix --input with other data. Tensors in external data files stay external: the files are linked (or
copied) next to OUT.onnx.`,
  async run(argv: string[]): Promise<void> {
    const { positional, flags } = parseArguments('nasa-patch', argv, { input: { value: true }, expect: { value: true } });
    if (positional.length !== 2) throw new SettingsError('snoopi nasa-patch takes two paths: IN.onnx OUT.onnx');
    const [input, output] = positional as [string, string];
    const expectFlag = numberFlag(flags, 'expect', (value) => Number.isInteger(value) && value >= 1, 'a positive integer');
    const startedAt = performance.now();
    const [{ readModel }, { locateExternalData, writeModel }, { nasaRewrite, DEFAULT_SOURCE, NEGATIVE_INPUT, SCALE_INPUT }, { expectedCrossAttentionLayers }, { readFile }] = await Promise.all([
      import('../onnx/onnx-proto.js'),
      import('../onnx/external-data.js'),
      import('./nasa-rewrite.js'),
      import('./optimum-import.js'),
      import('node:fs/promises'),
    ]);
    let expect = expectFlag;
    let expectedFrom = '--expect';
    if (expect === undefined) {
      const configPath = join(dirname(input), 'config.json');
      const config = await readFile(configPath, 'utf8').then((text) => JSON.parse(text) as Record<string, unknown>, () => undefined);
      expect = expectedCrossAttentionLayers(config);
      expectedFrom = configPath;
    }
    const model = await readModel(input);
    const sources = await locateExternalData(model, dirname(input));
    const result = nasaRewrite(model, { source: flags.get('input') ?? DEFAULT_SOURCE, expect });
    const files = await writeModel(model, output, sources);
    const patterns = new Map<string, number>();
    for (const { pattern } of result.attentions) patterns.set(pattern, (patterns.get(pattern) ?? 0) + 1);
    const lines = [
      `patched ${result.attentions.length} cross-attention layers reading ${result.source} ` +
        `(${[...patterns].map(([pattern, count]) => `${count} ${pattern}`).join(', ')}); ` +
        (expect === undefined ? 'no expected count to check against' : `as expected by ${expectedFrom}`),
      `added inputs ${NEGATIVE_INPUT} and ${SCALE_INPUT}, ${result.addedNodes} nodes`,
      `wrote ${output}${files.length > 1 ? ` and its external data (${files.slice(1).join(', ')})` : ''} in ${seconds(startedAt)}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};

const METHODS = ['imported', 'pg-sb', 'sb', 'teacher-init'] as const;

export const importCommand = {
  summary: 'turn an optimum/diffusers ONNX folder of a one-step student into a model package (NASA + fused generator)',
  usage: `snoopi import DIR --out PACKAGE_DIR [flags]

DIR is a Hugging Face optimum/diffusers ONNX export of a one-step text-to-image model: model_index.json,
text_encoder/model.onnx, unet/model.onnx, vae_decoder/model.onnx, tokenizer/ (vocab.json, merges.txt),
scheduler/scheduler_config.json and vae_decoder/config.json (scaling_factor). Writes the model package of
docs/contracts.md to PACKAGE_DIR (replacing one that is there): the tokenizer, the text encoder (int64 input_ids,
last_hidden_state only), generator.onnx (the UNet with NASA in its cross-attentions at the fixed timestep, the
one-step x0 formula of the scheduler's prediction_type, the VAE decoder and uint8 NHWC pixels, in one graph) and
model.json with every file's sha256. External data files are linked (or copied) into the package.

Flags:
  --out=PACKAGE_DIR           the package folder; its name is the model id (required)
  --id=ID                     the model id (must equal the folder name)
  --display-name=TEXT         default: "<id> (imported from <DIR name>)"
  --method=${METHODS.join('|')}   default: imported
  --teacher=ID                default: ""
  --backbone=NAME             default: unet/config.json's snoopi_backbone or _class_name
  --timestep=T                the student's timestep; default: num_train_timesteps - 1 (999)
  --scaling-factor=S          default: the VAE config's scaling_factor
  --expect=N                  cross-attention layers the UNet must have; default: from unet/config.json
  --nasa-default-scale=A      model.json nasa.default_scale (default 0)
  --nasa-max-scale=A          model.json nasa.max_scale (default 1)`,
  async run(argv: string[]): Promise<void> {
    const valued = { value: true };
    const { positional, flags } = parseArguments('import', argv, {
      out: valued, id: valued, 'display-name': valued, method: valued, teacher: valued, backbone: valued, timestep: valued,
      'scaling-factor': valued, expect: valued, 'nasa-default-scale': valued, 'nasa-max-scale': valued,
    });
    if (positional.length !== 1) throw new SettingsError('snoopi import takes one folder: snoopi import DIR --out PACKAGE_DIR');
    const outDir = flags.get('out');
    if (outDir === undefined) throw new SettingsError('snoopi import needs --out=PACKAGE_DIR');
    const method = flags.get('method') ?? 'imported';
    if (!(METHODS as readonly string[]).includes(method)) throw new SettingsError(`--method must be one of ${METHODS.join(', ')}, got ${JSON.stringify(method)}`);
    const scale = (value: number) => value >= 0;
    const options = {
      sourceDir: positional[0]!,
      outDir,
      method: method as (typeof METHODS)[number],
      id: flags.get('id'),
      displayName: flags.get('display-name'),
      teacher: flags.get('teacher'),
      backbone: flags.get('backbone'),
      timestep: numberFlag(flags, 'timestep', (value) => Number.isInteger(value) && value >= 0, 'an integer >= 0'),
      scalingFactor: numberFlag(flags, 'scaling-factor', (value) => value > 0, 'a positive number'),
      expect: numberFlag(flags, 'expect', (value) => Number.isInteger(value) && value >= 1, 'a positive integer'),
      nasaDefaultScale: numberFlag(flags, 'nasa-default-scale', scale, 'a number >= 0'),
      nasaMaxScale: numberFlag(flags, 'nasa-max-scale', scale, 'a number >= 0'),
    };
    const startedAt = performance.now();
    const { importOptimum } = await import('./optimum-import.js');
    const report = await importOptimum(options);
    const { manifest, nasa } = report;
    const lines = [
      `NASA: patched ${nasa.attentions.length} cross-attention layers` +
        (report.expectedFrom === undefined ? ' (no expected count to check against)' : ` (as expected by ${report.expectedFrom})`),
      `generator.onnx: ${manifest.parameterization} student at t = ${manifest.timestep}, latent ${manifest.latent.channels}x${manifest.latent.height}x${manifest.latent.width}, ` +
        `image ${manifest.image.width}x${manifest.image.height}`,
      `text_encoder.onnx: ${report.textEncoderChanges.length === 0 ? 'copied' : report.textEncoderChanges.join('; ')}`,
      `wrote ${outDir} (${Object.keys(manifest.files).length} files, method ${manifest.method}) in ${seconds(startedAt)}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};
