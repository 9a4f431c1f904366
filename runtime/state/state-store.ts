/**
 * An actor's local materialized state in its own RocksDB. Keeps the invariant that local
 * state is never ahead of the pipe: it is written only after a commit succeeded, in one
 * batch together with the changelog offset it reflects.
 */
import { mkdirSync, rmSync } from 'node:fs'
import RocksDB from 'rocksdb-native'
import { getMany, writeBatch } from '../rocks.ts'
import { WeirError } from '../errors.ts'

/** Meta keys start with \u0000, so they sort before every state key and never collide with one. */
const CHANGELOG_POSITION = Buffer.from('\u0000changelog-position')
const WRITE_BUFFER_BYTES = 8 * 1024 * 1024

export interface StoreWrite {
  key: Buffer
  /** null deletes the key. */
  value: Buffer | null
}

export class StateStore {
  private constructor(private readonly db: RocksDB, readonly path: string) {}

  static async open(path: string): Promise<StateStore> {
    mkdirSync(path, { recursive: true })
    // Small memtables: after a kill, opening replays the write-ahead log, so its size is restart time.
    const db = new RocksDB(path, { writeBufferSize: WRITE_BUFFER_BYTES })
    try {
      await db.ready()
    } catch (cause) {
      throw new WeirError('WEIR_STATE_OPEN_FAILED', `cannot open state store ${path}: ${(cause as Error).message}`, { path }, { cause })
    }
    return new StateStore(db, path)
  }

  /** Removes a store's files, for a wipe-and-restore. */
  static destroy(path: string): void {
    rmSync(path, { recursive: true, force: true })
  }

  /** The changelog offset up to which this store holds the committed state (0 = nothing). */
  async changelogPosition(): Promise<number> {
    const v = await this.db.get(CHANGELOG_POSITION)
    return v ? Number(v.readBigUInt64BE(0)) : 0
  }

  getMany(keys: Buffer[]): Promise<Array<Buffer | null>> {
    return getMany(this.db, keys)
  }

  /** Applies committed changes and the changelog position they reach, atomically. */
  async apply(writes: StoreWrite[], changelogPosition: number): Promise<void> {
    const batch = writeBatch(this.db, writes.length + 1)
    for (const w of writes) {
      if (w.value === null) batch.tryDelete(w.key)
      else batch.tryPut(w.key, w.value)
    }
    const pos = Buffer.allocUnsafe(8)
    pos.writeBigUInt64BE(BigInt(changelogPosition))
    batch.tryPut(CHANGELOG_POSITION, pos)
    try {
      await batch.flush()
    } finally {
      batch.destroy()
    }
  }

  /** Every entry whose key starts with `prefix`. */
  async scan(prefix: string): Promise<Array<{ key: Buffer; value: Buffer }>> {
    const out: Array<{ key: Buffer; value: Buffer }> = []
    const gte = Buffer.from(prefix)
    const lt = Buffer.concat([gte, Buffer.from([0xff])])
    for await (const entry of this.db.iterator({ gte, lt })) out.push(entry)
    return out
  }

  close(): Promise<void> {
    return this.db.close()
  }
}
