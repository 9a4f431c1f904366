/**
 * Reads one keyed state of one actor's local RocksDB (a worker's `<state-dir>/state/<stage>/<p>`,
 * closed) as weir/testing's readState does: stored keys are `<state name>\0<record key>`,
 * values the runtime's state codec. readState collects every partition's entries of every
 * state into arrays and one object first (43 s for 2M keys on this machine); this streams
 * one state of one partition (about 8 s per million keys: rocksdb-native's iterator costs
 * about 8 µs per entry whatever its batch size).
 *
 * @example
 * await scanKeyedState(join(stateDir, 'state', 'count', '0'), 'count', (key, value) => counts.set(key, value as number))
 */
import RocksDB from 'rocksdb-native'
import { stateCodec } from '../../runtime/codec.ts'

/** Entries per native iterator call. */
const BATCH = 4096

/** Calls `onEntry` with the record key and decoded value of every entry of state `name`; returns how many there were. */
export async function scanKeyedState(storePath: string, name: string, onEntry: (key: string, value: unknown) => void): Promise<number> {
  const db = new RocksDB(storePath)
  await db.ready()
  try {
    const gte = Buffer.from(`${name}\u0000`)
    const lt = Buffer.from(`${name}\u0001`)
    let n = 0
    for await (const { key, value } of db.iterator({ gte, lt }, { capacity: BATCH })) {
      onEntry(key.toString('utf8', gte.length), stateCodec.decode(value))
      n++
    }
    return n
  } finally {
    await db.close()
  }
}
