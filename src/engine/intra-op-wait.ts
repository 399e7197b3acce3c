// How onnxruntime's idle intra-op threads wait for work: the serve setting intraOpWait (the generator's; the text
// encoder's threads always block, engine.ts) and the session config entries it becomes. Its own module, without
// onnxruntime, so that the settings schema on the main thread can name the values.

/**
 * How onnxruntime's idle intra-op threads wait for the next piece of work, as onnxruntime session config entries:
 * - block: they sleep. Every operator wakes them again, which costs the most at small batches.
 * - spin-in-call (default): they busy-wait while a call runs and stop when it returns
 *   (session.force_spinning_stop), so they spin only between the operators of one call.
 * - spin: they busy-wait, also for a while after each call, burning CPU between isolated requests.
 * Measured on the 2-core dev machine with the trained default model (one process, the two sessions' calls
 * interleaved): spin-in-call against block 11.4 / 13.9 ms against 13.0 / 17.5 ms at batch 1 and 113 / 109 against
 * 97 / 92 img/s at batch 16 (two runs); CPU per isolated batch-1 call 26-30 ms against 23 ms (block) and 71 ms (spin).
 * `npm run bench` compares them (engine section and the service configurations).
 */
export const INTRA_OP_WAITS = ['block', 'spin-in-call', 'spin'] as const;
export type IntraOpWait = (typeof INTRA_OP_WAITS)[number];
export const DEFAULT_INTRA_OP_WAIT: IntraOpWait = 'spin-in-call';

/** The `extra.session` config entries of each wait mode (onnxruntime-node flattens them to session.intra_op.allow_spinning, ...). */
export function intraOpWaitEntries(wait: IntraOpWait): { intra_op: { allow_spinning: '0' | '1' }; force_spinning_stop: '0' | '1' } {
  return {
    intra_op: { allow_spinning: wait === 'block' ? '0' : '1' },
    force_spinning_stop: wait === 'spin-in-call' ? '1' : '0',
  };
}
