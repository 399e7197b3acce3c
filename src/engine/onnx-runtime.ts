// The only module that imports onnxruntime-node. It owns the device -> execution-provider table, the session
// options, and the one function every inference goes through (runSession), which checks the feeds against the
// graph's own input metadata before calling into native code.
import ort from 'onnxruntime-node';
import { DEFAULT_INTRA_OP_WAIT, intraOpWaitEntries, type IntraOpWait } from './intra-op-wait.js';

export type ExecutionProvider = 'cpu' | 'cuda';

/**
 * Providers tried in order for each configured device; the first that opens a session wins. onnxruntime does not
 * fall back by itself: a CUDA provider whose shared libraries are missing fails session creation ("Failed to load
 * shared library"), so the fallback is done here, with the reason kept for the log.
 */
export const PROVIDER_FALLBACKS: Readonly<Record<ExecutionProvider, readonly ExecutionProvider[]>> = {
  cuda: ['cuda', 'cpu'],
  cpu: ['cpu'],
};

export interface SessionSettings {
  executionProvider: ExecutionProvider;
  /** Threads inside one operator (the CPU provider's main knob). */
  intraOpThreads: number;
  /** Threads across independent operators; used only with executionMode 'parallel'. */
  interOpThreads: number;
  executionMode: 'sequential' | 'parallel';
  /** How idle intra-op threads wait for work (the serve setting intraOpWait; INTRA_OP_WAITS). */
  intraOpWait: IntraOpWait;
}

export const DEFAULT_SESSION_SETTINGS: SessionSettings = {
  executionProvider: 'cpu',
  intraOpThreads: 2,
  interOpThreads: 1,
  executionMode: 'sequential',
  intraOpWait: DEFAULT_INTRA_OP_WAIT,
};

/** int32: the input_ids of optimum's text encoders (the importer's tests run them). */
export type TensorType = 'float32' | 'int64' | 'int32' | 'uint8';

/** A tensor as plain data, so it can cross a worker boundary (its buffer transferred, not copied). */
export interface PlainTensor {
  type: TensorType;
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array;
  dims: readonly number[];
}

/** One input or output as the graph declares it: fixed dims are numbers, dynamic ones their symbolic names. */
export interface TensorSpec {
  name: string;
  type: string;
  dims: readonly (number | string)[];
}

export interface ProviderFallback {
  provider: ExecutionProvider;
  reason: string;
}

export interface OpenedSession {
  /** A name for messages (the graph's file name). */
  label: string;
  session: ort.InferenceSession;
  /** The provider the session actually runs on. */
  provider: ExecutionProvider;
  /** Providers that were tried first and failed, with why. */
  fallbacks: ProviderFallback[];
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

function sessionOptions(provider: ExecutionProvider, settings: SessionSettings): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    intraOpNumThreads: settings.intraOpThreads,
    interOpNumThreads: settings.interOpThreads,
    executionMode: settings.executionMode,
    graphOptimizationLevel: 'all',
    extra: { session: intraOpWaitEntries(settings.intraOpWait) },
  };
}

function specsOf(metadata: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return metadata.map((value) =>
    value.isTensor ? { name: value.name, type: value.type, dims: [...value.shape] } : { name: value.name, type: 'non-tensor', dims: [] },
  );
}

/** Opens `path` on the first provider of the configured device's fallback list that works. */
export async function openSession(path: string, label: string, settings: SessionSettings): Promise<OpenedSession> {
  const fallbacks: ProviderFallback[] = [];
  const candidates = PROVIDER_FALLBACKS[settings.executionProvider];
  for (const [index, provider] of candidates.entries()) {
    try {
      const session = await ort.InferenceSession.create(path, sessionOptions(provider, settings));
      return { label, session, provider, fallbacks, inputs: specsOf(session.inputMetadata), outputs: specsOf(session.outputMetadata) };
    } catch (error) {
      if (index === candidates.length - 1) throw error;
      fallbacks.push({ provider, reason: error instanceof Error ? error.message : String(error) });
    }
  }
  throw new Error(`no execution provider configured for ${settings.executionProvider}`);
}

const formatDims = (dims: readonly (number | string)[]): string => `[${dims.join(',')}]`;

/**
 * Checks `feeds` against the graph's inputs: names, dtypes, ranks, fixed dims, one value per symbolic dim (the
 * batch axis must agree across inputs) and data length. Returns an empty list when they match, otherwise one line per
 * input (every input, so the message shows the whole picture) plus one per unexpected feed.
 */
export function feedMismatches(inputs: readonly TensorSpec[], feeds: Readonly<Record<string, PlainTensor>>): string[] {
  const symbols = new Map<string, number>();
  let mismatch = false;
  const lines = inputs.map((spec) => {
    const expected = `expected ${spec.type} ${formatDims(spec.dims)}`;
    const feed = feeds[spec.name];
    if (feed === undefined) {
      mismatch = true;
      return `${spec.name}: ${expected}, got nothing`;
    }
    const got = `got ${feed.type} ${formatDims(feed.dims)}`;
    const problems: string[] = [];
    if (feed.type !== spec.type) problems.push('dtype differs');
    if (feed.dims.length !== spec.dims.length) problems.push('rank differs');
    else {
      spec.dims.forEach((dim, axis) => {
        const size = feed.dims[axis]!;
        if (typeof dim === 'number') {
          if (dim !== size) problems.push(`axis ${axis} must be ${dim}`);
        } else if (dim !== '') {
          const bound = symbols.get(dim);
          if (bound === undefined) symbols.set(dim, size);
          else if (bound !== size) problems.push(`axis ${axis} (${dim}) must be ${bound} as in an earlier input`);
        }
      });
    }
    const elements = feed.dims.reduce((product, size) => product * size, 1);
    if (feed.data.length !== elements) problems.push(`data holds ${feed.data.length} values, dims need ${elements}`);
    if (problems.length > 0) mismatch = true;
    return `${spec.name}: ${expected}, ${got}${problems.length > 0 ? ` (${problems.join('; ')})` : ''}`;
  });
  for (const name of Object.keys(feeds)) {
    if (!inputs.some((spec) => spec.name === name)) {
      mismatch = true;
      lines.push(`${name}: not an input of the graph`);
    }
  }
  return mismatch ? lines : [];
}

/** The one way to run a graph: check the feeds, run, return the outputs as plain tensors. */
export async function runSession(opened: OpenedSession, feeds: Readonly<Record<string, PlainTensor>>): Promise<Record<string, PlainTensor>> {
  const mismatches = feedMismatches(opened.inputs, feeds);
  if (mismatches.length > 0) {
    throw new Error(`the inputs do not match the graph:\n  ${mismatches.join('\n  ')}`);
  }
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [name, feed] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(feed.type, feed.data, feed.dims);
  const results = await opened.session.run(ortFeeds);
  const outputs: Record<string, PlainTensor> = {};
  for (const [name, value] of Object.entries(results)) {
    const tensor = value as ort.Tensor;
    outputs[name] = { type: tensor.type as TensorType, data: tensor.data as PlainTensor['data'], dims: tensor.dims };
  }
  return outputs;
}

export async function closeSession(opened: OpenedSession): Promise<void> {
  await opened.session.release();
}
