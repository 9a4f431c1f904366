/**
 * Kafka's default partitioner (murmur2 of the key bytes, positive, modulo the partition
 * count), so records weir writes land where a Java or kafkajs producer would put them.
 */
export function murmur2(data: Buffer): number {
  const length = data.length
  const seed = 0x9747b28c
  const m = 0x5bd1e995
  const r = 24
  let h = seed ^ length
  const length4 = length >> 2
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4
    let k = (data[i4]! & 0xff) + ((data[i4 + 1]! & 0xff) << 8) + ((data[i4 + 2]! & 0xff) << 16) + ((data[i4 + 3]! & 0xff) << 24)
    k = Math.imul(k, m)
    k ^= k >>> r
    k = Math.imul(k, m)
    h = Math.imul(h, m)
    h ^= k
  }
  const rest = length % 4
  const tail = length & ~3
  if (rest === 3) h ^= (data[tail + 2]! & 0xff) << 16
  if (rest >= 2) h ^= (data[tail + 1]! & 0xff) << 8
  if (rest >= 1) {
    h ^= data[tail]! & 0xff
    h = Math.imul(h, m)
  }
  h ^= h >>> 13
  h = Math.imul(h, m)
  h ^= h >>> 15
  return h | 0
}

/** The partition Kafka's default partitioner picks for a keyed record. */
export function partitionForKey(key: Buffer, partitions: number): number {
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
  const m = 0x5bd1e995
  let h = 0x9747b28c ^ length
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
    let k = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24)
    k = Math.imul(k, m)
    k ^= k >>> 24
    k = Math.imul(k, m)
    h = Math.imul(h, m)
    h ^= k
  }
  const rest = length % 4
  const tail = length & ~3
  if (rest === 3) {
    const c = key.charCodeAt(tail + 2)
    all |= c
    h ^= c << 16
  }
  if (rest >= 2) {
    const c = key.charCodeAt(tail + 1)
    all |= c
    h ^= c << 8
  }
  if (rest >= 1) {
    const c = key.charCodeAt(tail)
    all |= c
    h ^= c
    h = Math.imul(h, m)
  }
  if (all > 0x7f) return -1
  h ^= h >>> 13
  h = Math.imul(h, m)
  h ^= h >>> 15
  return ((h | 0) & 0x7fffffff) % partitions
}
