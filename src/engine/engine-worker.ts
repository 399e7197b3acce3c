// A worker thread that hosts one ONNX graph. session.run() is a synchronous native call, so graphs run here and the
// main thread stays free for HTTP and batching. Protocol (all tensors travel as PlainTensor with buffers transferred):
//   workerData: WorkerSetup        -> posts { kind: 'ready', ... } or { kind: 'failed', message }
//   { kind: 'run', id, feeds }     -> posts { kind: 'result', id, outputs } or { kind: 'error', id, message }
//   { kind: 'close' }              -> releases the session, posts { kind: 'closed' }
import { parentPort, workerData } from 'node:worker_threads';
import { DEFAULT_SESSION_SETTINGS, closeSession, openSession, runSession, type OpenedSession, type PlainTensor, type ProviderFallback, type SessionSettings, type TensorSpec } from './onnx-runtime.js';

export interface WorkerSetup {
  path: string;
  label: string;
  /** Overrides of DEFAULT_SESSION_SETTINGS (kept there so the main thread never loads onnxruntime). */
  settings: Partial<SessionSettings>;
}

export type WorkerRequest = { kind: 'run'; id: number; feeds: Record<string, PlainTensor> } | { kind: 'close' };

export type WorkerReply =
  | { kind: 'ready'; provider: SessionSettings['executionProvider']; fallbacks: ProviderFallback[]; inputs: TensorSpec[]; outputs: TensorSpec[] }
  | { kind: 'failed'; message: string }
  | { kind: 'result'; id: number; outputs: Record<string, PlainTensor> }
  | { kind: 'error'; id: number; message: string }
  | { kind: 'closed' };

const port = parentPort!;
const setup = workerData as WorkerSetup;
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));
const post = (reply: WorkerReply, transfer: ArrayBuffer[] = []): void => port.postMessage(reply, transfer);

/** Output buffers go back without a copy when the typed array spans its whole buffer; otherwise they are copied. */
function transferable(outputs: Record<string, PlainTensor>): ArrayBuffer[] {
  const buffers: ArrayBuffer[] = [];
  for (const output of Object.values(outputs)) {
    const { data } = output;
    if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer) {
      buffers.push(data.buffer);
    } else {
      output.data = data.slice();
      buffers.push(output.data.buffer as ArrayBuffer);
    }
  }
  return buffers;
}

let opened: OpenedSession;
try {
  opened = await openSession(setup.path, setup.label, { ...DEFAULT_SESSION_SETTINGS, ...setup.settings });
  post({ kind: 'ready', provider: opened.provider, fallbacks: opened.fallbacks, inputs: opened.inputs, outputs: opened.outputs });
} catch (error) {
  post({ kind: 'failed', message: messageOf(error) });
  port.close();
}

// Requests are handled one at a time: onnxruntime runs them one after another anyway, and a strict order keeps a
// close from releasing the session under a running inference.
let queue = Promise.resolve();
port.on('message', (request: WorkerRequest) => {
  queue = queue.then(async () => {
    if (request.kind === 'close') {
      await closeSession(opened);
      post({ kind: 'closed' });
      port.close();
      return;
    }
    try {
      const outputs = await runSession(opened, request.feeds);
      post({ kind: 'result', id: request.id, outputs }, transferable(outputs));
    } catch (error) {
      post({ kind: 'error', id: request.id, message: messageOf(error) });
    }
  });
});
