/** Small helpers over rocksdb-native's batch API, shared by the embedded pipe and the state store. */
import type RocksDB from 'rocksdb-native'
import type { WriteBatch } from 'rocksdb-native'

/**
 * A write batch sized for `operations`. rocksdb-native reuses freed batches without
 * resetting their capacity, and a batch created with capacity 0 grows by doubling and so
 * never grows: its next user loops forever. Every batch weir makes goes through here.
 */
export function writeBatch(db: RocksDB, operations: number): WriteBatch {
  return db.write({ capacity: Math.max(8, operations) })
}

/** Reads many keys in one RocksDB batch (one native call), in key order of the input. */
export async function getMany(db: RocksDB, keys: Array<Buffer | string>): Promise<Array<Buffer | null>> {
  if (keys.length === 0) return []
  const batch = db.read({ capacity: keys.length, autoDestroy: true })
  const values = keys.map((k) => batch.get(k))
  await batch.flush()
  return Promise.all(values)
}
