/**
 * Byte copies on the record paths (Kafka and embedded record batches, a checkpoint's store
 * writes). Keys and values are mostly a few bytes, where Buffer#copy's argument checks cost
 * more than the copy (3 % of the Kafka word count's profile, benchmarks/HISTORY.md).
 *
 * @example
 * const at = copyInto(Buffer.from('key'), batch, 12) // 15
 */

/** Copies `src` into `dst` at `at` and returns the position after it. */
export function copyInto(src: Uint8Array, dst: Uint8Array, at: number): number {
  const n = src.length
  if (n > 32) {
    dst.set(src, at)
    return at + n
  }
  for (let i = 0; i < n; i++) dst[at + i] = src[i]!
  return at + n
}
