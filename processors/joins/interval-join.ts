/**
 * Interval join of two keyed streams (Flink's `intervalJoin`): a left record at time t
 * joins every right record of its key whose time is in [t + lower, t + upper]. Each side's
 * records wait in keyed state until the watermark says no partner can come any more, then
 * an event-time timer frees them; so state, timers and outputs are checkpointed together
 * and every pair is emitted exactly once across crashes.
 */
import { ConfigError, Processor, type Context, type StreamRecord, type Timer } from '../../index.ts'
import { LateRecords, sideOf, sumToFirst, type LateOutput } from './late.ts'

/**
 * Options of an `IntervalJoin`.
 *
 * @example
 * { lowerBoundMs: -2_000, upperBoundMs: 1_000, join: (click, view) => ({ click, view }) }
 */
export interface IntervalJoinOptions<L, R, Out> {
  /** Earliest right time a left record at t joins: t + lowerBoundMs (may be negative). */
  lowerBoundMs: number
  /** Latest right time a left record at t joins: t + upperBoundMs (≥ lowerBoundMs). */
  upperBoundMs: number
  /**
   * Makes the output of one pair; it is emitted under the pair's key with event time
   * `max(times.left, times.right)`.
   */
  join(left: L, right: R, times: { left: number; right: number }): Out
  /**
   * The side output late records go to (a record at or below the watermark when it comes:
   * its partners may be gone). Default 'late' when the stage declares it in `sideOutputs`;
   * false only counts them (actor state `interval-join.dropped`).
   */
  lateOutput?: LateOutput
}

/** A side's buffered records of one key, by event time (a map key is the time in decimal). */
type Buffered<T> = Readonly<Record<string, readonly T[]>>

/**
 * Joins input 0 (left) and input 1 (right) of a `connect`ed stage per key: a left record
 * at t with every right record at [t + lower, t + upper], whichever came first. Both
 * inputs must be keyed alike (`a.keyBy(f, n).connect(b.keyBy(g, n))`), so a key's records
 * of both sides meet in one actor.
 *
 * The set of pairs emitted does not depend on the order records arrive in, only on what is
 * late: a record at or below the stage's watermark (the minimum of both inputs') is
 * dropped, since partners it should have met may have been freed. Give the sources a
 * `maxOutOfOrdernessMs` that covers their disorder and nothing is late.
 *
 * State: per key and side, the records not yet freed, stored as one value per side (so a
 * key with thousands of buffered records costs that much per update); a left record at t
 * is freed when the watermark reaches t + upper, a right one at t + (-lower), by an
 * event-time timer at that time.
 *
 * @example
 * // each click with the page views of the same user from 2 s before to 1 s after it
 * clicks.keyBy((c) => c.user, 4)
 *   .connect(views.keyBy((v) => v.user, 4))
 *   .process('click-views', () => new IntervalJoin<Click, View, ClickView>({
 *     lowerBoundMs: -2_000, upperBoundMs: 1_000, join: (click, view) => ({ click: click.id, page: view.page }),
 *   }))
 */
export class IntervalJoin<L, R, Out> extends Processor<L | R, Out> {
  private readonly left = this.state.value<Buffered<L>>('interval-join.left')
  private readonly right = this.state.value<Buffered<R>>('interval-join.right')
  private readonly dropped = this.state.actorValue<number>('interval-join.dropped', { rescale: sumToFirst })
  private readonly lower: number
  private readonly upper: number
  private readonly joinPair: IntervalJoinOptions<L, R, Out>['join']
  private readonly late: LateRecords

  constructor(options: IntervalJoinOptions<L, R, Out>) {
    super()
    const { lowerBoundMs: lower, upperBoundMs: upper } = options
    if (!Number.isSafeInteger(lower)) throw new ConfigError('lowerBoundMs', `must be a whole number of ms, got ${lower}`)
    if (!Number.isSafeInteger(upper)) throw new ConfigError('upperBoundMs', `must be a whole number of ms, got ${upper}`)
    if (lower > upper) throw new ConfigError('lowerBoundMs', `must not exceed upperBoundMs (${upper}), got ${lower}`)
    if (typeof options.join !== 'function') throw new ConfigError('join', 'must be a function (left, right, times) => output')
    this.lower = lower
    this.upper = upper
    this.joinPair = options.join
    this.late = new LateRecords(options.lateOutput)
  }

  onRecord(record: StreamRecord<L | R>, ctx: Context<Out>): void {
    const side = sideOf(record, 'IntervalJoin')
    const t = record.timestamp
    if (t <= ctx.watermark) {
      this.dropped.set((this.dropped.get() ?? 0) + 1)
      this.late.send(record, ctx as Context<unknown>)
      return
    }
    if (side === 0) {
      const left = record.value as L
      for (const [tr, r] of matches(this.right.get(), t + this.lower, t + this.upper)) this.emit(left, r, t, tr, ctx)
      this.buffer(this.left, left, t, t + this.upper, ctx)
    } else {
      const right = record.value as R
      for (const [tl, l] of matches(this.left.get(), t - this.upper, t - this.lower)) this.emit(l, right, tl, t, ctx)
      this.buffer(this.right, right, t, t - this.lower, ctx)
    }
  }

  /** Frees the records whose partners can no longer come (both sides may be due at one time). */
  override onTimer(timer: Timer): void {
    if (timer.domain !== 'event-time') return
    this.free(this.left, this.upper, timer.time)
    this.free(this.right, -this.lower, timer.time)
  }

  private emit(left: L, right: R, tl: number, tr: number, ctx: Context<Out>): void {
    ctx.emit(ctx.key, this.joinPair(left, right, { left: tl, right: tr }), { timestamp: Math.max(tl, tr) })
  }

  /** Keeps a record until the watermark reaches `until` (when no partner can come any more), unless it has already. */
  private buffer<T>(state: { get(): Buffered<T> | undefined; set(v: Buffered<T>): void }, value: T, t: number, until: number, ctx: Context<Out>): void {
    if (until <= ctx.watermark) return
    const buffered = state.get() ?? {}
    const at = String(t)
    state.set({ ...buffered, [at]: [...(buffered[at] ?? []), value] })
    ctx.timers.registerEventTime(until)
  }

  /** Drops the records of a side whose time + `after` is at or below `time`. */
  private free<T>(state: { get(): Buffered<T> | undefined; set(v: Buffered<T>): void; clear(): void }, after: number, time: number): void {
    const buffered = state.get()
    if (buffered === undefined) return
    let next: Record<string, readonly T[]> | undefined
    for (const at of Object.keys(buffered)) {
      if (Number(at) + after > time) continue
      next ??= { ...buffered }
      delete next[at]
    }
    if (next === undefined) return
    if (Object.keys(next).length === 0) state.clear()
    else state.set(next)
  }
}

/** The buffered records at times in [from, to], by time (then in arrival order). */
function* matches<T>(buffered: Buffered<T> | undefined, from: number, to: number): Generator<[number, T]> {
  if (buffered === undefined) return
  const times = Object.keys(buffered).map(Number).filter((t) => t >= from && t <= to).sort((a, b) => a - b)
  for (const t of times) for (const v of buffered[String(t)]!) yield [t, v]
}
