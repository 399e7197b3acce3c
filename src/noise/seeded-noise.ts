// Seeded Gaussian noise for the generator's `noise` input. Every image owns its seed, so an image's noise (and
// therefore its pixels) does not depend on which batch it ran in.
//
// The exact algorithm, so that any implementation can reproduce the values bit for bit before the final rounding:
//   1. Uniform 32-bit integers from mulberry32 with state s = seed (an unsigned 32-bit integer). Each step:
//        s = (s + 0x6D2B79F5) mod 2^32
//        t = s
//        t = imul32(t ^ (t >>> 15), t | 1)
//        t = t ^ (t + imul32(t ^ (t >>> 7), t | 61))      (the addition is mod 2^32)
//        out = t ^ (t >>> 14)                                 (as unsigned 32-bit)
//      imul32 is the low 32 bits of the product (JavaScript's Math.imul); >>> is the logical right shift.
//   2. Box-Muller on consecutive pairs (a, b) of those integers, computed in float64:
//        u1 = (a + 1) / 2^32      in (0, 1], so log(u1) is finite
//        u2 = b / 2^32            in [0, 1)
//        r  = sqrt(-2 ln u1)
//        values[2k] = r cos(2 pi u2), values[2k + 1] = r sin(2 pi u2)
//      With an odd count the last sine is dropped.
//   3. Each value is rounded to float32 (round to nearest even).
// The same in Python (numpy rounding to float32 at the end gives the same values up to libm's last-ulp
// differences in cos/sin/log, which the float32 rounding almost always hides):
//   def mulberry32(s):
//       while True:
//           s = (s + 0x6D2B79F5) & 0xFFFFFFFF
//           t = s
//           t = ((t ^ (t >> 15)) * (t | 1)) & 0xFFFFFFFF
//           t = (t ^ ((t + (((t ^ (t >> 7)) * (t | 61)) & 0xFFFFFFFF)) & 0xFFFFFFFF))
//           yield t ^ (t >> 14)
import { randomInt } from 'node:crypto';

const TWO_POW_32 = 4294967296;
/** Seeds are unsigned 32-bit integers, 0..MAX_SEED. */
export const MAX_SEED = TWO_POW_32 - 1;

/** The seed of image `index` of a request with seed `requestSeed`: (requestSeed + index) mod 2^32. */
export function imageSeed(requestSeed: number, index: number): number {
  return (requestSeed + index) % TWO_POW_32;
}

/** A seed for a request that did not give one: uniform over 0 .. 2^32 - 1. */
export function randomSeed(): number {
  return randomInt(0, TWO_POW_32);
}

/** Returns a mulberry32 generator of unsigned 32-bit integers, seeded with `seed` (taken mod 2^32). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * Fills `out` (or a new array of `count` values) with standard normal float32 values from `seed`.
 * Writing into `out` lets the caller place an image's noise straight into a batch tensor.
 */
export function seededNoise(seed: number, count: number, out: Float32Array = new Float32Array(count)): Float32Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new RangeError(`seed must be an integer in 0..${MAX_SEED}, got ${seed}`);
  }
  if (out.length < count) throw new RangeError(`output holds ${out.length} values, ${count} needed`);
  const next = mulberry32(seed);
  for (let i = 0; i < count; i += 2) {
    const u1 = (next() + 1) / TWO_POW_32;
    const u2 = next() / TWO_POW_32;
    const r = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    out[i] = r * Math.cos(angle);
    if (i + 1 < count) out[i + 1] = r * Math.sin(angle);
  }
  return out;
}
