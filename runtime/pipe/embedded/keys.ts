/** Key layout of the embedded log's RocksDB. Big-endian numbers keep batches in offset order. */

export const TOPIC_PREFIX = 't'
export const END_PREFIX = 'e'
export const START_PREFIX = 's'
export const OFFSET_PREFIX = 'o'
export const EPOCH_PREFIX = 'x'
export const DATA_PREFIX = 'd'
export const CLEAN_PREFIX = 'c'
/** The log's identity, created with it. */
export const IDENTITY_KEY = Buffer.from('i')

export function topicKey(name: string): Buffer {
  return Buffer.from(TOPIC_PREFIX + name)
}

function partitionKey(prefix: string, topicId: number, partition: number, extra = 0): Buffer {
  const b = Buffer.allocUnsafe(9 + extra)
  b.write(prefix, 0)
  b.writeUInt32BE(topicId, 1)
  b.writeUInt32BE(partition, 5)
  return b
}

/** A data key names its batch by the batch's last offset, so a seek to `gte(offset)` lands on the batch holding it. */
export function dataKey(topicId: number, partition: number, lastOffset: number): Buffer {
  const b = partitionKey(DATA_PREFIX, topicId, partition, 8)
  b.writeBigUInt64BE(BigInt(lastOffset), 9)
  return b
}

export function dataKeyOffset(key: Buffer): number {
  return Number(key.readBigUInt64BE(9))
}

export function endKey(topicId: number, partition: number): Buffer {
  return partitionKey(END_PREFIX, topicId, partition)
}

export function cleanKey(topicId: number, partition: number): Buffer {
  return partitionKey(CLEAN_PREFIX, topicId, partition)
}

export function startKey(topicId: number, partition: number): Buffer {
  return partitionKey(START_PREFIX, topicId, partition)
}

export function offsetKey(group: string, topicId: number, partition: number): Buffer {
  return Buffer.concat([partitionKey(OFFSET_PREFIX, topicId, partition), Buffer.from(group)])
}

export function epochKey(transactionalId: string): Buffer {
  return Buffer.from(EPOCH_PREFIX + transactionalId)
}

export function u64(n: number): Buffer {
  const b = Buffer.allocUnsafe(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

export function readU64(b: Buffer): number {
  return Number(b.readBigUInt64BE(0))
}
