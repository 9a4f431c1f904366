/**
 * Reads the records of an embedded-pipe topic straight from its RocksDB, in chunks, for the
 * ceiling measurements: the ceilings run on exactly the bytes the measured stage read.
 * Open this only while no pipe has the data dir open.
 */
import { join } from 'node:path'
import { unpack } from 'msgpackr'
import RocksDB from 'rocksdb-native'
import { dataKey, topicKey } from '../../runtime/pipe/embedded/keys.ts'
import { batchCount, decodeBatch } from '../../runtime/pipe/embedded/record-batch.ts'
import type { StoredRecord } from '../../runtime/pipe/pipe.ts'

export interface RecordChunk {
  /** Key bytes (views into the stored batch). */
  keys: Buffer[]
  /** Value bytes (views into the stored batch). */
  values: Buffer[]
}

/** Opens the pipe's RocksDB of a data dir and reads a topic's id and partition count. */
async function openTopic(dataDir: string, topic: string): Promise<{ db: RocksDB; meta: { id: number; partitions: number } }> {
  const db = new RocksDB(join(dataDir, 'pipe'))
  await db.ready()
  const metaRaw = await db.get(topicKey(topic))
  if (metaRaw === null) {
    await db.close()
    throw new Error(`topic ${topic} not found in ${dataDir}`)
  }
  return { db, meta: unpack(metaRaw) as { id: number; partitions: number } }
}

/** Chunks of up to `chunk` records of every partition of `topic`, partition by partition, in offset order. */
export async function* topicRecords(dataDir: string, topic: string, chunk: number): AsyncGenerator<RecordChunk> {
  const { db, meta } = await openTopic(dataDir, topic)
  try {
    let keys: Buffer[] = []
    let values: Buffer[] = []
    for (let p = 0; p < meta.partitions; p++) {
      for await (const { value: batch } of db.iterator({ gte: dataKey(meta.id, p, 0), lt: dataKey(meta.id, p + 1, 0) })) {
        // The pipe's own decoder, so the ceilings read exactly what the runtime stored.
        const records: StoredRecord[] = []
        decodeBatch(batch, 0, 0, records)
        for (const r of records) {
          keys.push(r.key ?? EMPTY)
          values.push(r.value ?? EMPTY)
          if (keys.length === chunk) {
            yield { keys, values }
            keys = []
            values = []
          }
        }
      }
    }
    if (keys.length > 0) yield { keys, values }
  } finally {
    await db.close()
  }
}

const EMPTY = Buffer.alloc(0)

/** How a topic is stored: batches (RocksDB values) and the largest batch's record count. */
export async function topicShape(dataDir: string, topic: string): Promise<{ batches: number; records: number; maxBatchRecords: number }> {
  const { db, meta } = await openTopic(dataDir, topic)
  try {
    let batches = 0
    let records = 0
    let maxBatchRecords = 0
    for (let p = 0; p < meta.partitions; p++) {
      for await (const { value } of db.iterator({ gte: dataKey(meta.id, p, 0), lt: dataKey(meta.id, p + 1, 0) })) {
        const n = batchCount(value)
        batches++
        records += n
        if (n > maxBatchRecords) maxBatchRecords = n
      }
    }
    return { batches, records, maxBatchRecords }
  } finally {
    await db.close()
  }
}
