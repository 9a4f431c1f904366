/**
 * Window join of two keyed streams (Flink's `join(...).where(...).equalTo(...).window(...)`):
 * the records of a key from both sides that fall into the same tumbling or sliding window
 * are joined pairwise once the watermark passes the window. Each window's records are keyed
 * state and its firing an event-time timer, so every window's pairs are emitted exactly
 * once across crashes.
 */
import { ConfigError, Processor, type Context, type StreamRecord, type Timer } from '../../index.ts'
import { alignedWindows, type Window, type WindowAssigner } from '../windows/assigners.ts'
import { LateRecords, sideOf, sumToFirst, type LateOutput } from './late.ts'

/**
 * Options of a `WindowJoin`.
 *
 * @example
 * { window: tumbling(10_000), join: (person, auction) => ({ id: person.id, name: person.name, reserve: auction.reserve }) }
 */
export interface WindowJoinOptions<L, R, Out> {
  /** `tumbling(size)` or `sliding(size, slide)` (session windows are not supported for joins). */
  window: WindowAssigner
  /** Makes the output of one pair of the same key and window; emitted at the window's last instant (`end - 1`). */
  join(left: L, right: R, window: Window): Out
  /**
   * The side output late records go to (a record whose every window already fired). Default
   * 'late' when the stage declares it in `sideOutputs`; false only counts them (actor state
   * `window-join.dropped`).
   */
  lateOutput?: LateOutput
}

/** The records of one window of a key, per side. */
interface Pane<L, R> {
  readonly end: number
  readonly left: readonly L[]
  readonly right: readonly R[]
}

/**
 * Inner-joins input 0 (left) and input 1 (right) of a `connect`ed stage per key and
 * window: when the watermark reaches a window's last instant, each left record of the key
 * in the window is paired with each right one (none if either side is empty), in the order
 * they came. Both inputs must be keyed alike. A record is late, and dropped, when every
 * window it belongs to has fired; it still joins the windows of it that have not.
 *
 * State per key: the open windows with both sides' records, stored as one value (a
 * sliding window keeps each record `size / slide` times); one event-time timer per window.
 *
 * @example
 * // Nexmark q8: people who opened an account and created an auction in the same 10 s
 * persons.keyBy((p) => String(p.id), 4)
 *   .connect(auctions.keyBy((a) => String(a.seller), 4))
 *   .process('new-sellers', () => new WindowJoin<Person, Auction, NewSeller>({
 *     window: tumbling(10_000), join: (p, a, w) => ({ id: p.id, name: p.name, reserve: a.reserve, start: w.start }),
 *   }))
 */
export class WindowJoin<L, R, Out> extends Processor<L | R, Out> {
  private readonly panes = this.state.value<Readonly<Record<string, Pane<L, R>>>>('window-join.windows')
  private readonly dropped = this.state.actorValue<number>('window-join.dropped', { rescale: sumToFirst })
  private readonly window: Exclude<WindowAssigner, { kind: 'session' }>
  private readonly joinPair: WindowJoinOptions<L, R, Out>['join']
  private readonly late: LateRecords

  constructor(options: WindowJoinOptions<L, R, Out>) {
    super()
    const window = options.window
    if (window === undefined || (window.kind !== 'tumbling' && window.kind !== 'sliding')) throw new ConfigError('window', `must be tumbling(size) or sliding(size, slide), got ${window?.kind ?? String(window)}`)
    if (typeof options.join !== 'function') throw new ConfigError('join', 'must be a function (left, right, window) => output')
    this.window = window
    this.joinPair = options.join
    this.late = new LateRecords(options.lateOutput)
  }

  onRecord(record: StreamRecord<L | R>, ctx: Context<Out>): void {
    const side = sideOf(record, 'WindowJoin')
    const panes = this.panes.get() ?? {}
    let next: Record<string, Pane<L, R>> | undefined
    for (const w of alignedWindows(this.window, record.timestamp)) {
      if (w.end - 1 <= ctx.watermark) continue
      const id = String(w.start)
      const pane = panes[id] ?? { end: w.end, left: [], right: [] }
      next ??= { ...panes }
      next[id] = side === 0 ? { ...pane, left: [...pane.left, record.value as L] } : { ...pane, right: [...pane.right, record.value as R] }
      ctx.timers.registerEventTime(w.end - 1)
    }
    if (next !== undefined) {
      this.panes.set(next)
      return
    }
    this.dropped.set((this.dropped.get() ?? 0) + 1)
    this.late.send(record, ctx as Context<unknown>)
  }

  /** The watermark reached a window's last instant: its pairs go out and the window is freed. */
  override onTimer(timer: Timer, ctx: Context<Out>): void {
    if (timer.domain !== 'event-time') return
    const panes = this.panes.get()
    if (panes === undefined) return
    let next: Record<string, Pane<L, R>> | undefined
    for (const [id, pane] of Object.entries(panes)) {
      if (pane.end - 1 > timer.time) continue
      const window: Window = { start: Number(id), end: pane.end }
      for (const l of pane.left) for (const r of pane.right) ctx.emit(timer.key, this.joinPair(l, r, window), { timestamp: pane.end - 1 })
      next ??= { ...panes }
      delete next[id]
    }
    if (next === undefined) return
    if (Object.keys(next).length === 0) this.panes.clear()
    else this.panes.set(next)
  }
}
