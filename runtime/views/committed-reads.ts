/**
 * Reads of an actor's committed state, for its views. The actor's local RocksDB is written
 * only after a checkpoint committed (checkpoint.ts), one checkpoint at a time; right after
 * checkpoint N's write, before N+1's starts, the store holds exactly what N committed. A
 * RocksDB snapshot pinned there is what readers see until N+1's write is done: never
 * uncommitted state, never half a checkpoint, and reads run on RocksDB's threads without
 * waiting for (or holding up) processing.
 *
 * @example
 * const reads = new CommittedReads(store, { epoch: 7, positions: { 'weir.wc.split': 1200 }, committedAt: Date.now() })
 * // after each checkpoint's local write:
 * reads.pin({ epoch: 8, positions: { 'weir.wc.split': 1350 }, committedAt: Date.now() })
 * const values = await reads.read((snapshot) => snapshot.getMany([key]))
 */
import { WeirError } from '../errors.ts'
import type { StateStore, StoreSnapshot } from '../state/state-store.ts'

/** What a pinned snapshot reflects. */
export interface CommittedMeta {
  /** The epoch of the checkpoint it holds (0: nothing committed yet). */
  epoch: number
  /** Input topic → next offset of the actor's partition: every record below it is included. */
  positions: Record<string, number>
  /** When that checkpoint committed (ms since the epoch; at restore, when the state was restored). */
  committedAt: number
}

/** A lower bound on what an answer must include (Kafka Streams' PositionBound). */
export interface ReadBound {
  epoch?: number
  /** Input topic → offset the state's position must reach (records below it included). */
  positions?: Record<string, number>
}

/** The actor is stopping or has moved: ask its new holder. */
export class ViewMovedError extends WeirError {
  constructor(actor: string) {
    super('WEIR_VIEW_MOVING', `actor ${actor} is stopping or has moved; its new holder answers`, { actor }, { retriable: true })
  }
}

/** The state did not reach the requested bound in time. */
export class ViewBoundTimeoutError extends WeirError {
  constructor(actor: string, bound: ReadBound, meta: CommittedMeta, waitedMs: number) {
    super('WEIR_VIEW_NOT_YET', `actor ${actor} has not reached ${describeBound(bound)} after ${waitedMs} ms (it is at epoch ${meta.epoch}, positions ${JSON.stringify(meta.positions)})`, { actor, bound, epoch: meta.epoch, positions: meta.positions, waitedMs })
  }
}

function describeBound(bound: ReadBound): string {
  const parts: string[] = []
  if (bound.epoch !== undefined) parts.push(`epoch ${bound.epoch}`)
  for (const [topic, offset] of Object.entries(bound.positions ?? {})) parts.push(`${topic} offset ${offset}`)
  return parts.join(', ') || 'the bound'
}

/** Whether `meta` includes everything `bound` asks for. */
export function reaches(meta: CommittedMeta, bound: ReadBound): boolean {
  if (bound.epoch !== undefined && meta.epoch < bound.epoch) return false
  for (const [topic, offset] of Object.entries(bound.positions ?? {})) {
    if ((meta.positions[topic] ?? 0) < offset) return false
  }
  return true
}

interface Pinned {
  snapshot: StoreSnapshot
  meta: CommittedMeta
  readers: number
  released: boolean
}

export class CommittedReads {
  private current: Pinned
  private closed = false
  private readonly waiters = new Set<{ bound: ReadBound; resolve(): void; reject(err: unknown): void }>()

  constructor(private readonly store: StateStore, meta: CommittedMeta, private readonly actor = '') {
    this.current = { snapshot: store.snapshot(), meta, readers: 0, released: false }
  }

  get meta(): CommittedMeta {
    return this.current.meta
  }

  /** The store now holds a newer committed checkpoint: readers from here on see it. */
  pin(meta: CommittedMeta): void {
    if (this.closed) return
    const old = this.current
    this.current = { snapshot: this.store.snapshot(), meta, readers: 0, released: false }
    old.released = true
    if (old.readers === 0) void old.snapshot.close().catch(() => undefined)
    for (const w of this.waiters) {
      if (reaches(meta, w.bound)) {
        this.waiters.delete(w)
        w.resolve()
      }
    }
  }

  /** Runs `fn` on the newest pinned snapshot; the snapshot stays open until it is done. */
  async read<T>(fn: (snapshot: StoreSnapshot, meta: CommittedMeta) => Promise<T>): Promise<T> {
    if (this.closed) throw new ViewMovedError(this.actor)
    const pinned = this.current
    pinned.readers++
    try {
      return await fn(pinned.snapshot, pinned.meta)
    } catch (err) {
      // The store closed under the read (the actor stopped): the new holder answers.
      if (this.closed) throw new ViewMovedError(this.actor)
      throw err
    } finally {
      pinned.readers--
      if (pinned.released && pinned.readers === 0) void pinned.snapshot.close().catch(() => undefined)
    }
  }

  /** Resolves once the pinned state reaches `bound`; rejects after `waitMs` (ViewBoundTimeoutError) or when the actor stops. */
  async reach(bound: ReadBound, waitMs: number): Promise<void> {
    if (this.closed) throw new ViewMovedError(this.actor)
    if (reaches(this.current.meta, bound)) return
    const started = Date.now()
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        bound,
        resolve: () => {
          clearTimeout(timer)
          resolve()
        },
        reject: (err: unknown) => {
          clearTimeout(timer)
          reject(err)
        },
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        reject(new ViewBoundTimeoutError(this.actor, bound, this.current.meta, Date.now() - started))
      }, waitMs)
      this.waiters.add(waiter)
    })
  }

  /** The actor stops: waiting readers are told to ask the new holder; snapshots close with the store. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const w of this.waiters) w.reject(new ViewMovedError(this.actor))
    this.waiters.clear()
  }
}
