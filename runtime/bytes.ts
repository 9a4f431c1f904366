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

/** Strings longer than this are measured and written by Node (native) rather than in JavaScript. */
const SHORT_TEXT = 64

/**
 * The UTF-8 byte length of `s`: a short ASCII string (a word, a number's digits) is its
 * length, counted without a call into Node; anything else asks Buffer.byteLength.
 */
export function utf8Length(s: string): number {
  const n = s.length
  if (n > SHORT_TEXT) return Buffer.byteLength(s, 'utf8')
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, 'utf8')
  return n
}

/**
 * Room for `s` as UTF-8: a short string gets 3 bytes per UTF-16 unit (an upper bound, not
 * worth a scan), a longer one is measured, so it reserves no more than it takes.
 */
export function utf8Room(s: string): number {
  return s.length <= SHORT_TEXT ? s.length * 3 : Buffer.byteLength(s, 'utf8')
}

/**
 * Writes `s` as UTF-8 into `dst` at `at` (which must have room for utf8Length(s) bytes) and
 * returns the position after it. Lone surrogates become U+FFFD, as Buffer.from(s) makes them.
 */
export function writeUtf8(s: string, dst: Buffer, at: number): number {
  const n = s.length
  if (n <= SHORT_TEXT) {
    let i = 0
    for (; i < n; i++) {
      const c = s.charCodeAt(i)
      if (c > 0x7f) break
      dst[at + i] = c
    }
    if (i === n) return at + n
  }
  return at + dst.write(s, at, 'utf8')
}
