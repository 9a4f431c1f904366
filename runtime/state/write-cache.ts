/**
 * The actor's state cache. Keeps the "never ahead of the committed truth" half of the
 * checkpoint invariant: dirty entries live only here until a barrier turns them into
 * changelog records, and an entry may leave memory only after the local RocksDB holds it.
 */

/**
 * A cached state entry. `value === undefined` means absent (deleted or never set).
 *
 * The write cache numbers its change sets (the changes between two barriers): an entry
 * records the set that holds its newest change, and the sets tell what it is (WriteCache:
 * changed since the last barrier, taken by a barrier whose seal has not read it, or waiting
 * for its local write), so a barrier touches no entry.
 */
export class CacheEntry {
  value: unknown
  /** The change set holding this entry's newest change; 0: unchanged since it was loaded. */
  changedIn = 0
  /** The newest sealed change set whose seal read this entry (an entry listed twice is read once). */
  readIn = 0
  /** The sealed change set whose barrier value `sealed` holds (0: none): the entry changed again before that seal read it. */
  sealedFor = 0
  sealed: unknown = undefined
  /** Record sequence that last journaled this entry (undo on a failed record). */
  journalSeq = 0
  /** Never evicted: actor-scoped state, which is not reloaded on a miss. */
  pinned = false

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
 * The entries a barrier took (change set `set`), read by its seal in the background. Taking
 * them touches no entry: the barrier's stall stays flat in the number of dirty keys (a loop
 * over 182,000 of them took 13.5 ms at 10M keys). An entry the next epoch changes before the
 * seal read it keeps its barrier value beside it (WriteCache.set), so the seal always reads
 * the value as of the barrier.
 */
export class SealedEntries {
  constructor(private readonly entries: CacheEntry[], private readonly set: number) {}

  /** How many entries were listed; some of them are skipped by `at`. */
  get length(): number {
    return this.entries.length
  }

  /**
   * Entry `i`'s store key and its value as of the barrier, or undefined where it was not
   * changed at the barrier (a failed record's change, undone) or was listed again. Read each
   * index once.
   */
  at(i: number): DirtyEntry | undefined {
    const e = this.entries[i]!
    if (e.readIn === this.set) return undefined
    const held = e.sealedFor === this.set
    // Changed at the barrier: its newest change is in this set, or it changed since and kept the barrier's value.
    if (!held && e.changedIn !== this.set) return undefined
    e.readIn = this.set
    const value = held ? e.sealed : e.value
    if (held) {
      e.sealedFor = 0
      e.sealed = undefined
    }
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
  private readonly journalChangedIn: number[] = []
  private journalSize = 0
  private seq = 1
  private journaling = false
  /** The change set that takes changes now. */
  private openSet = 1
  /** The change set the newest barrier took (-1: none yet; 0 is an unchanged entry's). */
  private sealingSet = -1
  /** The newest change set whose local write has finished: entries changed in it or before may be evicted. */
  private flushedSet = 0
  /** Change sets taken by barriers whose local writes have not finished, oldest first, with their checkpoint. */
  private readonly unflushed: Array<{ set: number; epoch: number }> = []
  /** Changes whenever entries leave the cache, so holders of an entry know to look it up again. */
  generation = 0

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.count
  }

  get dirtyCount(): number {
    return this.dirtyList.length
  }

  /** Changed since the newest barrier. */
  isDirty(entry: CacheEntry): boolean {
    return entry.changedIn === this.openSet
  }

  /** May leave memory: the local store holds its value (unpinned, and changed in no set whose local write is pending). */
  evictable(entry: CacheEntry): boolean {
    return !entry.pinned && entry.changedIn <= this.flushedSet
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
      this.journalStep(entry, entry.value, entry.changedIn)
    }
    // Taken by the newest barrier and not read by its seal yet: keep the barrier's value for it.
    if (entry.changedIn === this.sealingSet && entry.readIn !== this.sealingSet && entry.sealedFor !== this.sealingSet) {
      entry.sealed = entry.value
      entry.sealedFor = this.sealingSet
    }
    entry.value = value
    if (entry.changedIn !== this.openSet) {
      entry.changedIn = this.openSet
      this.dirtyList.push(entry)
    }
  }

  /**
   * While a record runs, `undo` is kept and run if the record fails: for in-memory indexes
   * of cached state (the timers' time order) that a rollback of the values alone would leave
   * stale. Outside a record it is not kept (nothing is ever rolled back there).
   */
  onRollback(undo: () => void): void {
    if (this.journaling) this.journalStep(null, undo, 0)
  }

  private journalStep(entry: CacheEntry | null, value: unknown, changedIn: number): void {
    const i = this.journalSize++
    this.journalEntries[i] = entry
    this.journalValues[i] = value
    this.journalChangedIn[i] = changedIn
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
      // A listed entry changed back to an earlier set is skipped by its seal (SealedEntries.at).
      entry!.value = this.journalValues[i]
      entry!.changedIn = this.journalChangedIn[i]!
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
    const out: DirtyEntry[] = []
    for (let i = 0; i < sealed.length; i++) {
      const d = sealed.at(i)
      if (d !== undefined) out.push(d)
    }
    return out
  }

  /**
   * `takeDirty` for a seal that reads the entries later (SealedEntries): the barrier only
   * closes the open change set, and the seal reads each value as it was at the barrier.
   * Its entries are read before the next seal (the checkpointer takes a barrier only after
   * the previous seal finished): a later seal's barrier values would take their place.
   */
  seal(epoch: number): SealedEntries {
    const list = this.dirtyList
    this.dirtyList = []
    const set = this.openSet++
    this.sealingSet = set
    this.unflushed.push({ set, epoch })
    return new SealedEntries(list, set)
  }

  /** The local write of checkpoint `epoch` (and of every one before it) has finished: their entries may be evicted. */
  markFlushed(epoch: number): void {
    while (this.unflushed.length > 0 && this.unflushed[0]!.epoch <= epoch) this.flushedSet = this.unflushed.shift()!.set
  }

  /** Evicts clean, flushed entries, oldest first, down to the capacity. */
  evict(): void {
    if (this.count <= this.capacity) return
    let excess = this.count - this.capacity
    this.generation++
    for (const space of this.spaces.values()) {
      for (const [key, entry] of space) {
        if (excess <= 0) return
        if (!this.evictable(entry)) continue
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
