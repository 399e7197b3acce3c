// How onnxruntime's idle intra-op threads wait for work: the serve setting intraOpWait (the generator's; the text
// encoder's threads always block, engine.ts) and the session config entries it becomes. Its own module, without
// onnxruntime, so that the settings schema on the main thread can name the values.

/**
 * How onnxruntime's idle intra-op threads wait for the next piece of work, as onnxruntime session config entries:
 * - block: they sleep. Every operator wakes them again, which costs the most at small batches.
 * - spin-in-call (default): they busy-wait while a call runs and stop when it returns
 *   (session.force_spinning_stop), so they spin only between the operators of one call.
 * - spin: they busy-wait, also for a while after each call, burning CPU between isolated requests.
 * spin-in-call is the default: it keeps the threads awake between the operators of a call, where waking them again
 * costs most, without spending CPU between requests. The measurements are in the README's Performance section;
 * `npm run bench` compares the three (engine section, and the service's block and spin configurations).
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
