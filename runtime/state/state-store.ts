/**
 * An actor's local materialized state in its own RocksDB. Keeps the invariant that local
 * state is never ahead of the pipe: it is written only after a commit succeeded, in one
 * batch together with the changelog offset it reflects.
 */
import { mkdirSync, rmSync } from 'node:fs'
import RocksDB from 'rocksdb-native'
import { getMany, writeBatch } from '../rocks.ts'
import { WeirError } from '../errors.ts'
import { WriteArena } from './write-arena.ts'

/** Meta keys start with \u0000, so they sort before every state key and never collide with one. */
const CHANGELOG_POSITION = Buffer.from('\u0000changelog-position')
const WRITE_BUFFER_BYTES = 8 * 1024 * 1024

export interface StoreWrite {
  key: Buffer
  /** null deletes the key. */
  value: Buffer | null
}

/**
 * A consistent read-only view of a store at one moment (a RocksDB snapshot): writes
 * applied after it was taken are not seen. Close it when done; the store's close closes
 * what is still open.
 */
export interface StoreSnapshot {
  getMany(keys: Buffer[]): Promise<Array<Buffer | null>>
  /** Entries with gte <= key < lt in key order, at most `limit`. */
  range(gte: Buffer, lt: Buffer, limit: number): Promise<Array<{ key: Buffer; value: Buffer }>>
  /** Every entry in key order, streamed. */
  entries(): AsyncIterable<{ key: Buffer; value: Buffer }>
  close(): Promise<void>
}

/** Entries per native read when streaming a whole store (entries()). */
const ENTRIES_PER_READ = 1024

export class StateStore {
  private readonly snapshots = new Set<RocksDB>()
  /** Snapshots the store's close waits for (snapshot's keepsStoreOpen). */
  private readonly holders = new Set<Promise<void>>()

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
  async apply(writes: StoreWrite[] | WriteArena, changelogPosition: number): Promise<void> {
    const batch = writeBatch(this.db, writes.length + 1)
    const write = (key: Buffer, value: Buffer | null): void => {
      if (value === null) batch.tryDelete(key)
      else batch.tryPut(key, value)
    }
    if (writes instanceof WriteArena) writes.each(write)
    else for (const w of writes) write(w.key, w.value)
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

  /** Every entry in key order, meta entries included (their keys start with \u0000), streamed: a savepoint reads millions. */
  entries(): AsyncIterable<{ key: Buffer; value: Buffer }> {
    // rocksdb-native reads 8 entries per native call by default: a thread-pool round trip per 8 keys.
    return this.db.iterator({ gte: Buffer.alloc(0), capacity: ENTRIES_PER_READ })
  }

  /**
   * Pins the store as it is now (see StoreSnapshot). With `keepsStoreOpen`, closing the
   * store waits until this snapshot is closed (a savepoint writes from it while the actor
   * runs on and may finish); otherwise closing the store closes the snapshot.
   */
  snapshot(options: { keepsStoreOpen?: boolean } = {}): StoreSnapshot {
    const session = this.db.snapshot()
    this.snapshots.add(session)
    let released: (() => void) | undefined
    if (options.keepsStoreOpen === true) this.holders.add(new Promise<void>((r) => (released = r)))
    return {
      getMany: (keys) => getMany(session, keys),
      range: async (gte, lt, limit) => {
        const out: Array<{ key: Buffer; value: Buffer }> = []
        if (limit <= 0) return out
        for await (const entry of session.iterator({ gte, lt, limit })) out.push(entry)
        return out
      },
      entries: () => session.iterator({ gte: Buffer.alloc(0), capacity: ENTRIES_PER_READ }),
      close: async () => {
        released?.()
        if (!this.snapshots.delete(session)) return
        await session.close()
      },
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.holders)
    for (const s of [...this.snapshots]) {
      this.snapshots.delete(s)
      await s.close().catch(() => undefined)
    }
    return this.db.close()
  }
}
