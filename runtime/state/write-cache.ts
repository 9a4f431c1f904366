/**
 * The actor's state cache. Keeps the "never ahead of the committed truth" half of the
 * checkpoint invariant: dirty entries live only here until a barrier turns them into
 * changelog records, and an entry may leave memory only after the local RocksDB holds it.
 */

/** A cached state entry. `value === undefined` means absent (deleted or never set). */
export class CacheEntry {
  value: unknown
  dirty = false
  /** Epoch whose local-store write must finish before this entry may be evicted. */
  flushEpoch = 0
  /** Record sequence that last journaled this entry (undo on a failed record). */
  journalSeq = 0
  /** Never evicted: actor-scoped state, which is not reloaded on a miss. */
  pinned = false

  constructor(readonly key: string, value: unknown) {
    this.value = value
  }
}

interface UndoStep {
  entry: CacheEntry
  value: unknown
  dirty: boolean
}

export interface DirtyEntry {
  key: string
  value: unknown
}

export class WriteCache {
  private readonly entries = new Map<string, CacheEntry>()
  private dirtyList: CacheEntry[] = []
  private journal: UndoStep[] = []
  private seq = 1
  private journaling = false
  /** The newest epoch whose local write has finished. */
  flushedEpoch = 0
  /** Changes whenever entries leave the cache, so holders of an entry know to look it up again. */
  generation = 0

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.size
  }

  get dirtyCount(): number {
    return this.dirtyList.length
  }

  get(key: string): CacheEntry | undefined {
    return this.entries.get(key)
  }

  has(key: string): boolean {
    return this.entries.has(key)
  }

  /** Inserts a value read from the local store. */
  load(key: string, value: unknown, pinned = false): CacheEntry {
    const entry = new CacheEntry(key, value)
    entry.pinned = pinned
    this.entries.set(key, entry)
    return entry
  }

  /** Sets an entry's value; `undefined` deletes. */
  set(entry: CacheEntry, value: unknown): void {
    if (this.journaling && entry.journalSeq !== this.seq) {
      entry.journalSeq = this.seq
      this.journal.push({ entry, value: entry.value, dirty: entry.dirty })
    }
    entry.value = value
    if (!entry.dirty) {
      entry.dirty = true
      this.dirtyList.push(entry)
    }
  }

  /** Starts recording undo steps for one record. */
  beginRecord(): void {
    this.seq++
    this.journaling = true
    this.journal.length = 0
  }

  /** The record succeeded: its changes stay. */
  endRecord(): void {
    this.journaling = false
    this.journal.length = 0
  }

  /** The record failed: its changes are undone, as if it never ran. */
  rollbackRecord(): void {
    for (let i = this.journal.length - 1; i >= 0; i--) {
      const step = this.journal[i]!
      step.entry.value = step.value
      step.entry.dirty = step.dirty
    }
    this.journal.length = 0
    this.journaling = false
  }

  /**
   * Takes the dirty entries for a checkpoint of `epoch`: they are clean from now on, but
   * pinned in memory until `markFlushed(epoch)`.
   */
  takeDirty(epoch: number): DirtyEntry[] {
    const out: DirtyEntry[] = []
    for (const entry of this.dirtyList) {
      if (!entry.dirty) continue
      entry.dirty = false
      entry.flushEpoch = epoch
      out.push({ key: entry.key, value: entry.value })
    }
    this.dirtyList = []
    return out
  }

  markFlushed(epoch: number): void {
    this.flushedEpoch = Math.max(this.flushedEpoch, epoch)
  }

  /** Evicts clean, flushed entries, oldest first, down to the capacity. */
  evict(): void {
    if (this.entries.size <= this.capacity) return
    let excess = this.entries.size - this.capacity
    this.generation++
    for (const [key, entry] of this.entries) {
      if (excess <= 0) break
      if (entry.dirty || entry.pinned || entry.flushEpoch > this.flushedEpoch) continue
      this.entries.delete(key)
      excess--
    }
  }

  /** Drops everything (the actor is closing or restoring). */
  clear(): void {
    this.generation++
    this.entries.clear()
    this.dirtyList = []
    this.journal.length = 0
  }
}
