/**
 * Regular (unbounded) join of two keyed streams (Flink SQL's regular join, Kafka Streams'
 * KStream-KStream join without a window): each side's records wait in keyed state, and every
 * new record meets every stored record of the other side, so each matching pair is emitted
 * once; state, outputs and offsets are checkpointed together, so also once across crashes.
 */
import { ConfigError, Processor, type Context, type StreamRecord, type Timer } from '../../index.ts'
import { LateRecords, sideOf, sumToFirst, type LateOutput } from './late.ts'

/**
 * Options of a `RegularJoin`.
 *
 * @example
 * { join: (person, auction) => ({ name: person.name, auction: auction.id }), retainMs: 3_600_000 }
 */
export interface RegularJoinOptions<L, R, Out> {
  /**
   * Makes the output of one pair; it is emitted under the pair's key with event time
   * `max(times.left, times.right)`.
   */
  join(left: L, right: R, times: { left: number; right: number }): Out
  /**
   * How long a stored record is kept, in ms of event time: a record at t is dropped once the
   * watermark reaches t + retainMs (an event-time timer), and a record that comes when the
   * watermark is already there is late. Without it, both sides are kept for ever: state
   * grows with every record and nothing is late.
   */
  retainMs?: number
  /**
   * With `retainMs`: the side output late records go to. Default 'late' when the stage
   * declares it in `sideOutputs`; false only counts them (actor state `regular-join.dropped`).
   */
  lateOutput?: LateOutput
}

/** A side's stored records of one key, by event time (a map key is the time in decimal). */
type Stored<T> = Readonly<Record<string, readonly T[]>>

/**
 * Joins input 0 (left) and input 1 (right) of a `connect`ed stage per key: every left
 * record with every right record of the same key, whichever came first, each pair once.
 * Both inputs must be keyed alike (`a.keyBy(f, n).connect(b.keyBy(g, n))`), so a key's
 * records of both sides meet in one actor.
 *
 * Without `retainMs` state is never freed: every record of both sides is kept for ever
 * (use it when keys or the input are bounded, or filter the inputs first). The set of pairs
 * then does not depend on arrival order, and no record is late.
 *
 * With `retainMs` a record at t is freed when the watermark reaches t + retainMs (like
 * Flink's state TTL, but in event time, so it is checkpointed and replays alike). Pairs at
 * most retainMs apart are always joined unless one of them was late (came at or below the
 * watermark); pairs farther apart are joined only if the earlier one was still kept when
 * the later came, which depends on how far the watermark had moved. A record that comes
 * when the watermark is at or past t + retainMs is dropped: partners it should have met
 * may be gone.
 *
 * State: per key and side, the records kept, stored as one value per side (so a key with
 * thousands of records costs that much per update); with `retainMs`, an event-time timer per
 * stored time.
 *
 * @example
 * // Nexmark q3: each seller from OR, ID or CA with each of their auctions, whichever came first
 * persons.keyBy((p) => String(p.id), 4)
 *   .connect(auctions.keyBy((a) => String(a.seller), 4))
 *   .process('seller-auctions', () => new RegularJoin<Person, Auction, SellerAuction>({ join: (p, a) => ({ name: p.name, auction: a.id }) }))
 */
export class RegularJoin<L, R, Out> extends Processor<L | R, Out> {
  private readonly left = this.state.value<Stored<L>>('regular-join.left')
  private readonly right = this.state.value<Stored<R>>('regular-join.right')
  private readonly dropped = this.state.actorValue<number>('regular-join.dropped', { rescale: sumToFirst })
  private readonly retainMs: number | undefined
  private readonly joinPair: RegularJoinOptions<L, R, Out>['join']
  private readonly late: LateRecords

  constructor(options: RegularJoinOptions<L, R, Out>) {
    super()
    const retainMs = options.retainMs
    if (retainMs !== undefined && (!Number.isSafeInteger(retainMs) || retainMs < 0)) throw new ConfigError('retainMs', `must be a whole number of ms ≥ 0, got ${retainMs}`)
    if (typeof options.join !== 'function') throw new ConfigError('join', 'must be a function (left, right, times) => output')
    if (options.lateOutput !== undefined && retainMs === undefined) throw new ConfigError('lateOutput', 'needs retainMs: without it no record is late')
    this.retainMs = retainMs
    this.joinPair = options.join
    this.late = new LateRecords(options.lateOutput)
  }

  onRecord(record: StreamRecord<L | R>, ctx: Context<Out>): void {
    const side = sideOf(record, 'RegularJoin')
    const t = record.timestamp
    if (this.retainMs !== undefined && t + this.retainMs <= ctx.watermark) {
      this.dropped.set((this.dropped.get() ?? 0) + 1)
      this.late.send(record, ctx as Context<unknown>)
      return
    }
    if (side === 0) {
      const left = record.value as L
      for (const [tr, r] of inTimeOrder(this.right.get())) this.emit(left, r, t, tr, ctx)
      this.store(this.left, left, t, ctx)
    } else {
      const right = record.value as R
      for (const [tl, l] of inTimeOrder(this.left.get())) this.emit(l, right, tl, t, ctx)
      this.store(this.right, right, t, ctx)
    }
  }

  /** Frees the records kept for retainMs (both sides may be due at one time). */
  override onTimer(timer: Timer): void {
    if (timer.domain !== 'event-time' || this.retainMs === undefined) return
    const before = timer.time - this.retainMs
    this.free(this.left, before)
    this.free(this.right, before)
  }

  private emit(left: L, right: R, tl: number, tr: number, ctx: Context<Out>): void {
    ctx.emit(ctx.key, this.joinPair(left, right, { left: tl, right: tr }), { timestamp: Math.max(tl, tr) })
  }

  private store<T>(state: { get(): Stored<T> | undefined; set(v: Stored<T>): void }, value: T, t: number, ctx: Context<Out>): void {
    const stored = state.get() ?? {}
    const at = String(t)
    state.set({ ...stored, [at]: [...(stored[at] ?? []), value] })
    if (this.retainMs !== undefined) ctx.timers.registerEventTime(t + this.retainMs)
  }

  /** Drops the records of a side at or before `before`. */
  private free<T>(state: { get(): Stored<T> | undefined; set(v: Stored<T>): void; clear(): void }, before: number): void {
    const stored = state.get()
    if (stored === undefined) return
    let next: Record<string, readonly T[]> | undefined
    for (const at of Object.keys(stored)) {
      if (Number(at) > before) continue
      next ??= { ...stored }
      delete next[at]
    }
    if (next === undefined) return
    if (Object.keys(next).length === 0) state.clear()
    else state.set(next)
  }
}

/** The stored records by time, then in arrival order. */
function* inTimeOrder<T>(stored: Stored<T> | undefined): Generator<[number, T]> {
  if (stored === undefined) return
  const times = Object.keys(stored).map(Number).sort((a, b) => a - b)
  for (const t of times) for (const v of stored[String(t)]!) yield [t, v]
}
