/**
 * The actor's state cache. Keeps the "never ahead of the committed truth" half of the
 * checkpoint invariant: dirty entries live only here until a barrier turns them into
 * changelog records, and an entry may leave memory only after the local RocksDB holds it.
 */

/** A cached state entry. `value === undefined` means absent (deleted or never set). */
export class CacheEntry {
  value: unknown
  dirty = false
  /** Checkpoint whose local-store write must finish before this entry may be evicted. */
  flushEpoch = 0
  /** Record sequence that last journaled this entry (undo on a failed record). */
  journalSeq = 0
  /** Never evicted: actor-scoped state, which is not reloaded on a miss. */
  pinned = false
  /** 0, or taken by a barrier and not yet read by its seal (1), changed since that barrier (2: `sealed` holds the barrier's value). */
  sealState = 0
  sealed: unknown = undefined

  /** `prefix` names the state (e.g. 'count\u0000'); the stored key is prefix + key. */
  constructor(readonly prefix: string, readonly key: string, value: unknown) {
    this.value = value
  }

  /** The cache key in the store (`prefix + key`; see record-keys.ts storeKeyBytes for its bytes). */
  get storeKey(): string {
    return this.prefix + this.key
  }
}

export interface DirtyEntry {
  key: string
  value: unknown
}

/**
 * The entries a barrier took, read by its seal in the background. Taking them costs no
 * allocation per entry (the barrier's stall stays flat in the number of dirty keys); an
 * entry the next epoch changes before the seal read it keeps its barrier value beside it
 * (WriteCache.set), so the seal always reads the value as of the barrier.
 */
export class SealedEntries {
  constructor(private readonly entries: CacheEntry[]) {}

  get length(): number {
    return this.entries.length
  }

  /** Entry `i`'s store key and its value as of the barrier. Read each entry once. */
  at(i: number): DirtyEntry {
    const e = this.entries[i]!
    const value = e.sealState === 2 ? e.sealed : e.value
    e.sealState = 0
    e.sealed = undefined
    return { key: e.storeKey, value }
  }
}

/**
 * Entries are grouped by state (their key prefix) and looked up by the record key alone:
 * record keys are fresh strings per record, and a lookup by the plain key hashes it once,
 * where a concatenated "state + key" string would be built and hashed on every access.
 */
export class WriteCache {
  private readonly spaces = new Map<string, Map<string, CacheEntry>>()
  private count = 0
  private dirtyList: CacheEntry[] = []
  /**
   * The current record's undo steps, in parallel arrays kept across records (a fresh step
   * object per record, and the array's backing store that `length = 0` dropped, cost ~90 ns
   * a record): step i restores `journalEntries[i]` to `journalValues[i]` and
   * `journalDirty[i]`, or, where the entry is null, runs `journalValues[i]` (an undo function).
   */
  private readonly journalEntries: Array<CacheEntry | null> = []
  private readonly journalValues: unknown[] = []
  private readonly journalDirty: boolean[] = []
  private journalSize = 0
  private seq = 1
  private journaling = false
  /** The newest checkpoint whose local write has finished. */
  flushedEpoch = 0
  /** Changes whenever entries leave the cache, so holders of an entry know to look it up again. */
  generation = 0

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.count
  }

  get dirtyCount(): number {
    return this.dirtyList.length
  }

  /** The entries of one state (one key prefix). */
  space(prefix: string): Map<string, CacheEntry> {
    let space = this.spaces.get(prefix)
    if (space === undefined) {
      space = new Map()
      this.spaces.set(prefix, space)
    }
    return space
  }

  get(prefix: string, key: string): CacheEntry | undefined {
    return this.spaces.get(prefix)?.get(key)
  }

  has(prefix: string, key: string): boolean {
    return this.spaces.get(prefix)?.has(key) ?? false
  }

  /** Inserts a value read from the local store. */
  load(prefix: string, key: string, value: unknown, pinned = false): CacheEntry {
    const space = this.space(prefix)
    const entry = new CacheEntry(prefix, key, value)
    entry.pinned = pinned
    if (!space.has(key)) this.count++
    space.set(key, entry)
    return entry
  }

  /** The cached entry, or a new absent one (for state known not to exist in the store). */
  getOrCreate(prefix: string, key: string, pinned = false): CacheEntry {
    return this.get(prefix, key) ?? this.load(prefix, key, undefined, pinned)
  }

  /** Sets an entry's value; `undefined` deletes. */
  set(entry: CacheEntry, value: unknown): void {
    if (this.journaling && entry.journalSeq !== this.seq) {
      entry.journalSeq = this.seq
      this.journalStep(entry, entry.value, entry.dirty)
    }
    if (entry.sealState === 1) {
      entry.sealed = entry.value
      entry.sealState = 2
    }
    entry.value = value
    if (!entry.dirty) {
      entry.dirty = true
      this.dirtyList.push(entry)
    }
  }

  /**
   * While a record runs, `undo` is kept and run if the record fails: for in-memory indexes
   * of cached state (the timers' time order) that a rollback of the values alone would leave
   * stale. Outside a record it is not kept (nothing is ever rolled back there).
   */
  onRollback(undo: () => void): void {
    if (this.journaling) this.journalStep(null, undo, false)
  }

  private journalStep(entry: CacheEntry | null, value: unknown, dirty: boolean): void {
    const i = this.journalSize++
    this.journalEntries[i] = entry
    this.journalValues[i] = value
    this.journalDirty[i] = dirty
  }

  /** Forgets the steps, dropping their references (old values can be large). */
  private clearJournal(): void {
    for (let i = 0; i < this.journalSize; i++) {
      this.journalEntries[i] = null
      this.journalValues[i] = undefined
    }
    this.journalSize = 0
  }

  /** Starts recording undo steps for one record. */
  beginRecord(): void {
    this.seq++
    this.journaling = true
    this.clearJournal()
  }

  /** The record succeeded: its changes stay. */
  endRecord(): void {
    this.journaling = false
    this.clearJournal()
  }

  /** The record failed: its changes are undone, as if it never ran. */
  rollbackRecord(): void {
    for (let i = this.journalSize - 1; i >= 0; i--) {
      const entry = this.journalEntries[i]
      if (entry === null) {
        const undo = this.journalValues[i] as () => void
        undo()
        continue
      }
      entry!.value = this.journalValues[i]
      entry!.dirty = this.journalDirty[i]!
    }
    this.clearJournal()
    this.journaling = false
  }

  /**
   * Takes the dirty entries for a checkpoint of `epoch`: they are clean from now on, but
   * pinned in memory until `markFlushed(epoch)`.
   */
  takeDirty(epoch: number): DirtyEntry[] {
    const sealed = this.seal(epoch)
    return Array.from({ length: sealed.length }, (_, i) => sealed.at(i))
  }

  /**
   * `takeDirty` for a seal that reads the entries later (SealedEntries): the barrier only
   * flips flags, and the seal reads each value as it was at the barrier.
   */
  seal(epoch: number): SealedEntries {
    const list = this.dirtyList
    let n = 0
    for (let i = 0; i < list.length; i++) {
      const entry = list[i]!
      // Rolled back to clean after it was listed.
      if (!entry.dirty) continue
      entry.dirty = false
      entry.flushEpoch = epoch
      entry.sealState = 1
      list[n++] = entry
    }
    list.length = n
    this.dirtyList = []
    return new SealedEntries(list)
  }

  markFlushed(epoch: number): void {
    this.flushedEpoch = Math.max(this.flushedEpoch, epoch)
  }

  /** Evicts clean, flushed entries, oldest first, down to the capacity. */
  evict(): void {
    if (this.count <= this.capacity) return
    let excess = this.count - this.capacity
    this.generation++
    for (const space of this.spaces.values()) {
      for (const [key, entry] of space) {
        if (excess <= 0) return
        if (entry.dirty || entry.pinned || entry.flushEpoch > this.flushedEpoch) continue
        space.delete(key)
        this.count--
        excess--
      }
    }
  }

  /** Drops everything (the actor is closing or restoring). */
  clear(): void {
    this.generation++
    this.spaces.clear()
    this.count = 0
    this.dirtyList = []
    this.clearJournal()
  }
}
