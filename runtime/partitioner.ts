/**
 * Kafka's default partitioner (murmur2 of the key bytes, positive, modulo the partition
 * count), so records weir writes land where a Java or kafkajs producer would put them.
 */
const SEED = 0x9747b28c
const M = 0x5bd1e995

/** murmur2's step for one 4-byte block `k` (little-endian). */
function mixBlock(h: number, k: number): number {
  k = Math.imul(k, M)
  k ^= k >>> 24
  k = Math.imul(k, M)
  return Math.imul(h, M) ^ k
}

/** murmur2's last 1-3 bytes (`tail`, little-endian, `rest` of them) and final avalanche. */
function finish(h: number, tail: number, rest: number): number {
  if (rest > 0) h = Math.imul(h ^ tail, M)
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

export function murmur2(data: Buffer): number {
  const length = data.length
  let h = SEED ^ length
  const length4 = length >> 2
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4
    h = mixBlock(h, data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24))
  }
  const rest = length & 3
  const at = length & ~3
  let tail = 0
  if (rest === 3) tail |= data[at + 2]! << 16
  if (rest >= 2) tail |= data[at + 1]! << 8
  if (rest >= 1) tail |= data[at]!
  return finish(h, tail, rest)
}

/**
 * The partition Kafka's default partitioner picks for a keyed record. A key given as text
 * stands for its UTF-8 bytes: ASCII is hashed as it is, anything else through its bytes.
 */
export function partitionForKey(key: Buffer | string, partitions: number): number {
  if (typeof key === 'string') {
    const p = partitionForTextKey(key, partitions)
    if (p >= 0) return p
    key = Buffer.from(key, 'utf8')
  }
  return (murmur2(key) & 0x7fffffff) % partitions
}

/**
 * The partition of a key given as a string whose characters are all ASCII (so its UTF-8
 * bytes are its character codes), hashed without making those bytes; -1 when the key has
 * another character, whose bytes the caller makes for partitionForKey.
 *
 * @example
 * partitionForTextKey('ant', 4) === partitionForKey(Buffer.from('ant'), 4) // true
 */
export function partitionForTextKey(key: string, partitions: number): number {
  const length = key.length
  let h = SEED ^ length
  // Every character's bits, OR-ed: above 0x7f, some character is not one byte of UTF-8.
  let all = 0
  const length4 = length >> 2
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4
    const c0 = key.charCodeAt(i4)
    const c1 = key.charCodeAt(i4 + 1)
    const c2 = key.charCodeAt(i4 + 2)
    const c3 = key.charCodeAt(i4 + 3)
    all |= c0 | c1 | c2 | c3
    h = mixBlock(h, c0 | (c1 << 8) | (c2 << 16) | (c3 << 24))
  }
  const rest = length & 3
  const at = length & ~3
  let tail = 0
  for (let i = rest - 1; i >= 0; i--) {
    const c = key.charCodeAt(at + i)
    all |= c
    tail |= c << (8 * i)
  }
  if (all > 0x7f) return -1
  return (finish(h, tail, rest) & 0x7fffffff) % partitions
}
