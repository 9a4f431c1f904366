/**
 * Record keys are bytes: state, timers and partitioning follow the key's bytes exactly. A
 * key that is valid UTF-8 (the common case) is handed to user code as its plain string; one
 * that is not (an Avro or Protobuf key written by another system) as an opaque string that
 * starts with a lone U+D800 and holds the bytes one per character. No valid UTF-8 decodes
 * to a lone surrogate, so the two forms never collide, and weir maps either back to the same
 * bytes wherever a key is written (`ctx.emit`, state, timers).
 *
 * @example
 * keyString(Buffer.from('ant'))            // 'ant'
 * keyBytes(keyString(Buffer.from([0xff]))) // <Buffer ff>
 */
import { isUtf8 } from 'node:buffer'

/** Starts the string form of a key that is not UTF-8. */
export const BINARY_KEY_MARK = '\uD800'

/** The string user code sees for key bytes (and state is scoped by). */
export function keyString(bytes: Buffer): string {
  return shortAsciiString(bytes) ?? (isUtf8(bytes) ? bytes.toString('utf8') : BINARY_KEY_MARK + bytes.toString('latin1'))
}

const fromCodes = String.fromCharCode

/**
 * Up to 16 ASCII bytes as a string, made in JavaScript: a word, an id, a sensor name. Node's
 * isUtf8 and toString are two calls into C++ that cost 3 times as much for a key this short
 * (the Kafka word count's count stage turns every record's key into its string). Undefined
 * for longer keys or other bytes.
 */
function shortAsciiString(b: Buffer): string | undefined {
  const n = b.length
  if (n > 16) return undefined
  let all = 0
  for (let i = 0; i < n; i++) all |= b[i]!
  if (all > 0x7f) return undefined
  switch (n) {
    case 0: return ''
    case 1: return fromCodes(b[0]!)
    case 2: return fromCodes(b[0]!, b[1]!)
    case 3: return fromCodes(b[0]!, b[1]!, b[2]!)
    case 4: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!)
    case 5: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!)
    case 6: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!)
    case 7: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!)
    case 8: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!)
    case 9: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!, b[8]!)
    case 10: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!, b[8]!, b[9]!)
    case 11: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!, b[8]!, b[9]!, b[10]!)
    case 12: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!, b[8]!, b[9]!, b[10]!, b[11]!)
    case 13: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!, b[8]!, b[9]!, b[10]!, b[11]!, b[12]!)
    case 14: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!, b[8]!, b[9]!, b[10]!, b[11]!, b[12]!, b[13]!)
    case 15: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!, b[8]!, b[9]!, b[10]!, b[11]!, b[12]!, b[13]!, b[14]!)
    default: return fromCodes(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!, b[8]!, b[9]!, b[10]!, b[11]!, b[12]!, b[13]!, b[14]!, b[15]!)
  }
}

/** The bytes of a key given as a string (either form) or as bytes. */
export function keyBytes(key: string | Uint8Array): Buffer {
  if (typeof key !== 'string') return Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength)
  return isBinaryForm(key, 0) ? Buffer.from(key.slice(1), 'latin1') : Buffer.from(key, 'utf8')
}

/** A key string that is text (its bytes are its UTF-8), not the opaque form of non-UTF-8 bytes. */
export function isTextKey(key: string): boolean {
  return !isBinaryForm(key, 0)
}

/**
 * The stored bytes of a cache key that ends in a record key after a \0 (`state \0 key`, a
 * timer's `time \0 key`): the record key part in its own bytes, the rest UTF-8.
 */
export function storeKeyBytes(cacheKey: string): Buffer {
  const sep = cacheKey.indexOf('\u0000')
  if (sep < 0 || !isBinaryForm(cacheKey, sep + 1)) return Buffer.from(cacheKey, 'utf8')
  return Buffer.concat([Buffer.from(cacheKey.slice(0, sep + 1), 'utf8'), Buffer.from(cacheKey.slice(sep + 2), 'latin1')])
}

/** U+D800 at `at` not followed by a low surrogate: the mark, not the first half of a character such as U+10000. */
function isBinaryForm(s: string, at: number): boolean {
  if (s.charCodeAt(at) !== 0xd800) return false
  const next = s.charCodeAt(at + 1)
  return !(next >= 0xdc00 && next <= 0xdfff)
}
