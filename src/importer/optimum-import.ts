// `snoopi import`: a one-step student in the Hugging Face optimum/diffusers ONNX layout -> a model package
// (docs/contracts.md). The UNet gets NASA (nasa-rewrite.ts) and is fused with the VAE decoder and the uint8
// post-processing into generator.onnx (generator-graph.ts); the text encoder is adapted to the package signature
// (text-encoder-graph.ts); the tokenizer is copied; model.json lists every file with its sha256. Tensors in external
// data files stay external: they are linked (or copied) into the package under the component's folder name.
//
// Like trainer/export.py, the package is built in a sibling temporary folder and moved into place, so a registry
// never sees half a package.
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { tensorTypeOf, type Dim } from '../onnx/onnx-builders.js';
import { externalizeInitializers, inlineTensorBytes, locateExternalData, renameExternalData, writeModel } from '../onnx/external-data.js';
import { graphOf, readModel, type ModelProto } from '../onnx/onnx-proto.js';
import { MANIFEST_FILE, sha256OfFile, validateManifest, type ModelManifest } from '../registry/model-manifest.js';
import { buildGenerator, UNET_INPUTS } from './generator-graph.js';
import { nasaRewrite, type NasaRewriteResult } from './nasa-rewrite.js';
import { oneStepSchedule, type SchedulerConfig } from './one-step-schedule.js';
import { adaptTextEncoder } from './text-encoder-graph.js';

export interface ImportOptions {
  /** The optimum/diffusers folder. */
  sourceDir: string;
  /** The package folder to write; its name is the model id unless `id` says otherwise (then they must agree). */
  outDir: string;
  id?: string;
  displayName?: string;
  method?: ModelManifest['method'];
  teacher?: string;
  backbone?: string;
  /** Default: num_train_timesteps - 1 of the scheduler config (999). */
  timestep?: number;
  /** Default: the VAE config's scaling_factor. */
  scalingFactor?: number;
  /** Cross-attention layers the UNet must have; default: from unet/config.json. */
  expect?: number;
  nasaDefaultScale?: number;
  nasaMaxScale?: number;
}

export interface ImportReport {
  manifest: ModelManifest;
  nasa: NasaRewriteResult;
  /** Where the expected cross-attention count came from; undefined when nothing said it. */
  expectedFrom: string | undefined;
  textEncoderChanges: string[];
}

/** Inline tensor bytes above which the generator's weights move to an external file (protobuf stops at 2 GB). */
const INLINE_LIMIT_BYTES = 1_800_000_000;
const DEFAULT_SCALING_FACTOR = 0.18215; // diffusers' AutoencoderKL default
const CLIP_BOS = '<|startoftext|>';
const CLIP_EOS = '<|endoftext|>';

type Json = Record<string, unknown>;

async function readJson(path: string): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as Json;
  } catch (error) {
    throw new Error(`${path} is not valid JSON: ${(error as Error).message}`);
  }
}

async function requireJson(path: string): Promise<Json> {
  const json = await readJson(path);
  if (json === undefined) throw new Error(`${path} is missing`);
  return json;
}

const perBlock = (value: unknown, blocks: number): number[] =>
  Array.isArray(value) ? (value as number[]) : Array<number>(blocks).fill(typeof value === 'number' ? value : 1);

/**
 * How many cross-attention layers a UNet config describes: `cross_attention_layers` when present (the trainer writes
 * it), else counted from a diffusers UNet2DConditionModel config (CrossAttn blocks x layers x transformer layers).
 * Undefined when the config does not say.
 */
export function expectedCrossAttentionLayers(config: Json | undefined): number | undefined {
  if (config === undefined) return undefined;
  if (typeof config.cross_attention_layers === 'number') return config.cross_attention_layers;
  const down = config.down_block_types;
  const up = config.up_block_types;
  if (!Array.isArray(down) || !Array.isArray(up) || config.only_cross_attention === true) return undefined;
  const layers = perBlock(config.layers_per_block ?? 2, down.length);
  const transformerLayers = perBlock(config.transformer_layers_per_block, down.length);
  const reversedLayers = [...layers].reverse();
  const reversedTransformers = Array.isArray(config.reverse_transformer_layers_per_block)
    ? (config.reverse_transformer_layers_per_block as number[][]).map((perLayer) => perLayer[0] ?? 1)
    : [...transformerLayers].reverse();
  const crossAttention = (type: unknown) => typeof type === 'string' && type.includes('CrossAttn');
  let count = 0;
  down.forEach((type, index) => {
    if (crossAttention(type)) count += layers[index]! * transformerLayers[index]!;
  });
  const mid = config.mid_block_type === undefined || config.mid_block_type === null ? 'UNetMidBlock2DCrossAttn' : config.mid_block_type;
  if (crossAttention(mid)) count += transformerLayers[transformerLayers.length - 1]!;
  up.forEach((type, index) => {
    if (crossAttention(type)) count += (reversedLayers[index]! + 1) * reversedTransformers[index]!;
  });
  return count;
}

function tokenId(vocab: Record<string, number>, token: unknown, fallback: string, what: string): number {
  const text = typeof token === 'string' ? token : typeof token === 'object' && token !== null && 'content' in token ? String(token.content) : fallback;
  const id = vocab[text];
  if (id === undefined) throw new Error(`the tokenizer's ${what} token ${JSON.stringify(text)} is not in vocab.json`);
  return id;
}

const fixed = (dim: Dim | undefined): number | undefined => (typeof dim === 'number' ? dim : undefined);

function configSize(value: unknown, axis: 0 | 1): number | undefined {
  if (typeof value === 'number') return value;
  if (Array.isArray(value) && typeof value[axis] === 'number') return value[axis] as number;
  return undefined;
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`cannot tell ${what}: neither the graph nor the configs fix it`);
  return value;
}

async function fileEntries(dir: string, files: readonly string[]): Promise<ModelManifest['files']> {
  const entries: ModelManifest['files'] = {};
  for (const file of files) {
    const path = join(dir, file);
    entries[file] = { sha256: await sha256OfFile(path), bytes: (await stat(path)).size };
  }
  return entries;
}

/** Reads a component's model and where its external data files are, renamed to sit in `folder` of the package. */
async function readComponent(sourceDir: string, component: string): Promise<{ model: ModelProto; sources: Map<string, string> }> {
  const path = join(sourceDir, component, 'model.onnx');
  const model = await readModel(path);
  const located = await locateExternalData(model, dirname(path));
  renameExternalData(model, (location) => `${component}/${location}`);
  return { model, sources: new Map([...located].map(([location, file]) => [`${component}/${location}`, file])) };
}

export async function importOptimum(options: ImportOptions): Promise<ImportReport> {
  const { sourceDir } = options;
  const id = options.id ?? basename(resolve(options.outDir));
  if (basename(resolve(options.outDir)) !== id) throw new Error(`the package folder must be named after its id ${id}; got ${options.outDir}`);

  // 1. Configs.
  const modelIndex = await requireJson(join(sourceDir, 'model_index.json'));
  const scheduler = (await requireJson(join(sourceDir, 'scheduler', 'scheduler_config.json'))) as SchedulerConfig & Json;
  const unetConfig = await readJson(join(sourceDir, 'unet', 'config.json'));
  const vaeConfig = (await readJson(join(sourceDir, 'vae_decoder', 'config.json'))) ?? (await readJson(join(sourceDir, 'vae', 'config.json')));
  const textConfig = await readJson(join(sourceDir, 'text_encoder', 'config.json'));
  const tokenizerConfig = (await readJson(join(sourceDir, 'tokenizer', 'tokenizer_config.json'))) ?? {};
  const specialTokens = (await readJson(join(sourceDir, 'tokenizer', 'special_tokens_map.json'))) ?? {};
  const vocab = (await requireJson(join(sourceDir, 'tokenizer', 'vocab.json'))) as Record<string, number>;
  const schedule = oneStepSchedule(scheduler, options.timestep);
  const scalingFactor = options.scalingFactor ?? (vaeConfig === undefined ? undefined : ((vaeConfig.scaling_factor as number | undefined) ?? DEFAULT_SCALING_FACTOR));
  if (scalingFactor === undefined) throw new Error(`no vae_decoder/config.json or vae/config.json in ${sourceDir} for the VAE scaling factor; give --scaling-factor`);

  // 2. UNet + NASA, fused with the VAE decoder.
  const unet = await readComponent(sourceDir, 'unet');
  const expected = options.expect ?? expectedCrossAttentionLayers(unetConfig);
  const expectedFrom = options.expect !== undefined ? '--expect' : expected !== undefined ? 'unet/config.json' : undefined;
  const unetGraph = graphOf(unet.model);
  const noiseType = tensorTypeOf(unetGraph.input!.find((input) => input.name === UNET_INPUTS.sample) ?? {});
  const statesType = tensorTypeOf(unetGraph.input!.find((input) => input.name === UNET_INPUTS.states) ?? {});
  const nasa = nasaRewrite(unet.model, { source: UNET_INPUTS.states, expect: expected });
  const vae = await readComponent(sourceDir, 'vae_decoder');
  const decodedType = tensorTypeOf(graphOf(vae.model).output?.[0] ?? {});
  const generator = buildGenerator({ unet: unet.model, vaeDecoder: vae.model, schedule, scalingFactor });

  // 3. Text encoder.
  const text = await readComponent(sourceDir, 'text_encoder');
  const textSignature = adaptTextEncoder(text.model);

  // 4. The manifest's sizes, from the graphs where they are fixed, else from the configs.
  const channels = need(fixed(noiseType?.dims[1]) ?? (unetConfig?.in_channels as number | undefined), 'the latent channels');
  const latentHeight = need(fixed(noiseType?.dims[2]) ?? configSize(unetConfig?.sample_size, 0), 'the latent height');
  const latentWidth = need(fixed(noiseType?.dims[3]) ?? configSize(unetConfig?.sample_size, 1), 'the latent width');
  const upsampling = Array.isArray(vaeConfig?.block_out_channels) ? 2 ** ((vaeConfig.block_out_channels as unknown[]).length - 1) : undefined;
  const imageHeight = need(fixed(decodedType?.dims[2]) ?? (upsampling === undefined ? undefined : latentHeight * upsampling), 'the image height');
  const imageWidth = need(fixed(decodedType?.dims[3]) ?? (upsampling === undefined ? undefined : latentWidth * upsampling), 'the image width');
  const graphLength = fixed(textSignature.ids.dims[1]);
  const tokenizerLength = typeof tokenizerConfig.model_max_length === 'number' && tokenizerConfig.model_max_length < 100_000 ? tokenizerConfig.model_max_length : undefined;
  if (graphLength !== undefined && tokenizerLength !== undefined && graphLength !== tokenizerLength) {
    throw new Error(`the text encoder takes ${graphLength} tokens, the tokenizer's model_max_length is ${tokenizerLength}`);
  }
  const maxLength = need(graphLength ?? tokenizerLength, 'the token sequence length');
  const hiddenSize = need(fixed(textSignature.hidden.dims[2]) ?? (textConfig?.hidden_size as number | undefined), 'the text hidden size');
  const unetWidth = fixed(statesType?.dims[2]);
  if (unetWidth !== undefined && unetWidth !== hiddenSize) throw new Error(`the text encoder gives ${hiddenSize}-wide states, the UNet takes ${unetWidth}`);
  const eosTokenId = tokenId(vocab, specialTokens.eos_token, CLIP_EOS, 'eos');

  // 5. Write the package beside its final place, then move it there.
  const outDir = resolve(options.outDir);
  const temporary = `${outDir}.tmp-${process.pid}`;
  const previous = `${outDir}.old-${process.pid}`;
  await rm(temporary, { recursive: true, force: true });
  await mkdir(join(temporary, 'tokenizer'), { recursive: true });
  try {
    const generatorSources = new Map([...unet.sources, ...vae.sources]);
    if (inlineTensorBytes(generator) > INLINE_LIMIT_BYTES) {
      await externalizeInitializers(generator, temporary, 'generator.onnx.data', 1024);
      generatorSources.set('generator.onnx.data', join(temporary, 'generator.onnx.data'));
    }
    const files = [
      ...(await writeModel(generator, join(temporary, 'generator.onnx'), generatorSources)),
      ...(await writeModel(text.model, join(temporary, 'text_encoder.onnx'), text.sources)),
    ];
    for (const file of ['vocab.json', 'merges.txt']) {
      await copyFile(join(sourceDir, 'tokenizer', file), join(temporary, 'tokenizer', file));
      files.push(`tokenizer/${file}`);
    }
    const manifest = validateManifest(
      {
        format_version: 1,
        id,
        display_name: options.displayName ?? `${id} (imported from ${basename(resolve(sourceDir))})`,
        backbone: options.backbone ?? (unetConfig?.snoopi_backbone as string | undefined) ?? (unetConfig?._class_name as string | undefined) ?? 'imported-unet',
        parameterization: schedule.parameterization,
        method: options.method ?? 'imported',
        teacher: options.teacher ?? '',
        timestep: schedule.timestep,
        image: { width: imageWidth, height: imageHeight },
        latent: { channels, height: latentHeight, width: latentWidth },
        text: {
          max_length: maxLength,
          hidden_size: hiddenSize,
          pad_token_id: specialTokens.pad_token === undefined ? eosTokenId : tokenId(vocab, specialTokens.pad_token, CLIP_EOS, 'pad'),
          bos_token_id: tokenId(vocab, specialTokens.bos_token, CLIP_BOS, 'bos'),
          eos_token_id: eosTokenId,
        },
        nasa: { default_scale: options.nasaDefaultScale ?? 0, max_scale: options.nasaMaxScale ?? 1 },
        files: await fileEntries(temporary, files),
        training: {
          recipe: {
            imported_from: resolve(sourceDir),
            pipeline: modelIndex._class_name ?? null,
            scheduler: { beta_schedule: scheduler.beta_schedule ?? null, beta_start: scheduler.beta_start ?? null, beta_end: scheduler.beta_end ?? null, prediction_type: scheduler.prediction_type ?? null },
            alpha_bar: schedule.alphaBar,
            scaling_factor: scalingFactor,
            nasa_layers: nasa.attentions.length,
            text_encoder_changes: textSignature.changes,
          },
          steps: 0,
          seed: 0,
          git_commit: '',
          metrics: {},
        },
      },
      join(outDir, MANIFEST_FILE),
    );
    await writeFile(join(temporary, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    await rm(previous, { recursive: true, force: true });
    const replacing = await stat(outDir).then(() => true, () => false);
    if (replacing) await rename(outDir, previous);
    await rename(temporary, outDir);
    await rm(previous, { recursive: true, force: true });
    return { manifest, nasa, expectedFrom, textEncoderChanges: textSignature.changes };
  } finally {
    await rm(temporary, { recursive: true, force: true });
  }
}
