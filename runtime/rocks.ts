/** Small helpers over rocksdb-native's batch API, shared by the embedded pipe and the state store. */
import type RocksDB from 'rocksdb-native'

/** Reads many keys in one RocksDB batch (one native call), in key order of the input. */
export async function getMany(db: RocksDB, keys: Array<Buffer | string>): Promise<Array<Buffer | null>> {
  if (keys.length === 0) return []
  const batch = db.read({ capacity: keys.length, autoDestroy: true })
  const values = keys.map((k) => batch.get(k))
  await batch.flush()
  return Promise.all(values)
}
