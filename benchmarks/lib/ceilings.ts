/**
 * This machine's ceilings for the word-count stage, measured on the records it read: what a
 * plain loop reaches for each of the three things the stage must do per record (count in a
 * hash map, decode the value, write state to RocksDB). Only the loop itself is timed; reading
 * the records from the topic and building inputs is not.
 */
import { mkdirSync } from 'node:fs'
import { Packr } from 'msgpackr'
import RocksDB from 'rocksdb-native'
import { msgpack } from '../../runtime/codec.ts'
import { topicRecords } from './topic-records.ts'

export interface Ceiling {
  perSecond: number
  operations: number
  timedMs: number
}

function ceiling(operations: number, timedMs: number): Ceiling {
  return { perSecond: operations / (timedMs / 1000), operations, timedMs }
}

/** Defeats dead-code elimination of the measured loops. */
export let sink = 0

/**
 * A synchronous keyed count in a JS Map over the same words, in the same order. The words
 * are decoded from the key bytes outside the timed loop, so each is a fresh string whose
 * hash is not cached yet, as in the runtime.
 */
export async function mapCountCeiling(dataDir: string, topic: string): Promise<Ceiling & { distinct: number }> {
  const counts = new Map<string, number>()
  let n = 0
  let ms = 0
  for await (const { keys } of topicRecords(dataDir, topic, 65_536)) {
    const words = new Array<string>(keys.length)
    for (let i = 0; i < keys.length; i++) words[i] = keys[i]!.toString('utf8')
    const t = performance.now()
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!
      counts.set(w, (counts.get(w) ?? 0) + 1)
    }
    ms += performance.now() - t
    n += words.length
  }
  return { ...ceiling(n, ms), distinct: counts.size }
}

/**
 * msgpackr decoding the same record values, batch by batch, the fastest way it offers for
 * values packed in one stored batch: `unpack(batch, { start, end })` on the batch buffer, so
 * msgpackr builds its DataView once per batch. Same options as the runtime's codec.
 */
export async function msgpackDecodeCeiling(dataDir: string, topic: string): Promise<Ceiling> {
  const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })
  let n = 0
  let ms = 0
  let acc = 0
  let arrayBuffer: ArrayBufferLike | undefined
  let whole: Buffer = Buffer.alloc(0)
  for await (const { values } of topicRecords(dataDir, topic, 65_536)) {
    const t = performance.now()
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!
      if (v.buffer !== arrayBuffer) {
        arrayBuffer = v.buffer
        whole = Buffer.from(arrayBuffer)
      }
      const s = packr.unpack(whole, { start: v.byteOffset, end: v.byteOffset + v.length }) as string
      acc += s.length
    }
    ms += performance.now() - t
    n += values.length
  }
  sink += acc
  return ceiling(n, ms)
}

/**
 * For comparison, the runtime's decode path today: its msgpack codec on each record value
 * as a separate Buffer view (msgpackr then creates and caches a DataView per value).
 */
export async function msgpackDecodeRuntimePath(dataDir: string, topic: string): Promise<Ceiling> {
  let n = 0
  let ms = 0
  let acc = 0
  for await (const { values } of topicRecords(dataDir, topic, 65_536)) {
    const t = performance.now()
    for (let i = 0; i < values.length; i++) acc += (msgpack.decode(values[i]!) as string).length
    ms += performance.now() - t
    n += values.length
  }
  sink += acc
  return ceiling(n, ms)
}

/**
 * rocksdb-native batched puts in a tight loop into a fresh database with the state store's
 * defaults: one write batch (`db.write({ capacity })`, `tryPut`, `flush`) per `batch`
 * records, keyed like the count stage's state (`count\0<word>`) with small msgpack values.
 */
export async function rocksdbPutCeiling(dataDir: string, topic: string, dbDir: string, batch = 10_000): Promise<Ceiling> {
  mkdirSync(dbDir, { recursive: true })
  const db = new RocksDB(dbDir)
  await db.ready()
  const values = Array.from({ length: 1000 }, (_, i) => msgpack.encode(i + 1))
  const prefix = Buffer.from('count\u0000')
  let n = 0
  let ms = 0
  try {
    for await (const { keys } of topicRecords(dataDir, topic, batch)) {
      const stateKeys = keys.map((k) => Buffer.concat([prefix, k]))
      const t = performance.now()
      const w = db.write({ capacity: stateKeys.length })
      for (let i = 0; i < stateKeys.length; i++) w.tryPut(stateKeys[i]!, values[(n + i) % 1000]!)
      await w.flush()
      w.destroy()
      ms += performance.now() - t
      n += stateKeys.length
    }
  } finally {
    await db.close()
  }
  return ceiling(n, ms)
}
