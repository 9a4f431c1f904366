/**
 * Event-time window aggregation per key (Flink's `window(...).aggregate(...)`). A key's
 * open windows and their accumulators are keyed state, each window's firing and cleanup
 * are event-time timers: both are checkpointed with the outputs, so every window fires
 * exactly once across crashes (plus one late firing per late record it accepts).
 */
import { ConfigError, Processor, type Context, type StreamRecord, type Timer } from '../../index.ts'
import { alignedWindows, type Window, type WindowAssigner } from './assigners.ts'
import { mergeSession } from './sessions.ts'

/**
 * How a window's records are folded into a result. Accumulators are state values: they
 * must survive msgpack (plain objects, arrays, numbers, strings) and must be treated as
 * immutable: return a new accumulator from `add` and `merge` rather than changing the one
 * passed in, which may still belong to a checkpoint being written.
 *
 * @example
 * const average: WindowAggregation<Tick, { sum: number; n: number }, number> = {
 *   create: () => ({ sum: 0, n: 0 }), add: (a, t) => ({ sum: a.sum + t.price, n: a.n + 1 }),
 *   merge: (a, b) => ({ sum: a.sum + b.sum, n: a.n + b.n }), result: (a) => a.sum / a.n }
 */
export interface WindowAggregation<In, Acc, Out> {
  /** The accumulator of an empty window. */
  create(): Acc
  /** Adds one record to a window's accumulator. */
  add(acc: Acc, value: In, record: StreamRecord<In>): Acc
  /** Combines the accumulators of two sessions that merged. Required for session windows. */
  merge?(a: Acc, b: Acc): Acc
  /** What the window emits when it fires (again, on a late firing). */
  result(acc: Acc, window: Window, key: string | null): Out
}

/**
 * Options of a `WindowAggregate`.
 *
 * @example
 * { window: tumbling(60_000), allowedLatenessMs: 5_000, aggregate: average }
 */
export interface WindowAggregateOptions<In, Acc, Out> {
  /** `tumbling(size)`, `sliding(size, slide)` or `session(gap)`. */
  window: WindowAssigner
  /**
   * How long after a window fired (in event time) records may still update it: each such
   * record makes the window fire again at once with the updated result. Records for a
   * window whose `end - 1 + allowedLatenessMs` is at or below the watermark are dropped.
   * Default 0: every window fires exactly once, and records behind the watermark for
   * their window are dropped.
   */
  allowedLatenessMs?: number
  /**
   * The side output dropped records go to (their key, value and timestamp, unchanged).
   * Default 'late' if the stage declares it in `sideOutputs`, else dropped records are
   * only counted; `false` never sends them. A name given here must be declared.
   */
  lateOutput?: string | false
  aggregate: WindowAggregation<In, Acc, Out>
}

/** One open window of a key and its accumulator. */
interface Pane<Acc> {
  readonly start: number
  readonly end: number
  readonly acc: Acc
}

/** A key's open windows by start (a key's sessions never share a start either). */
type Panes<Acc> = Readonly<Record<string, Pane<Acc>>>

/**
 * Aggregates each key's records per event-time window and emits `result(...)` once the
 * watermark reaches the window's last instant (`end - 1`, also the result's event time),
 * keyed like its input. Put it after a `keyBy`: windows are per key.
 *
 * State: one keyed value with all open windows of a key (written whole on every record,
 * so a few open windows per key are cheap; a sliding window with `size / slide` in the
 * hundreds is not), one event-time timer per open window (two with allowed lateness),
 * and an actor counter of dropped records, `windows.dropped` (see `readState` in
 * weir/testing). Windows are freed when they can no longer change.
 *
 * @example
 * words.keyBy(4).process('per-minute', () => new WindowAggregate<Tick, { sum: number; n: number }, number>({
 *   window: tumbling(60_000), allowedLatenessMs: 5_000, aggregate: average,
 * }), { sideOutputs: ['late'] })
 */
export class WindowAggregate<In, Acc, Out> extends Processor<In, Out> {
  private readonly panes = this.state.value<Panes<Acc>>('windows')
  // A count per actor: on a rescale (savepoint restore) the total goes to the first actor.
  private readonly dropped = this.state.actorValue<number>('windows.dropped', { rescale: (counts, actors) => [counts.reduce<number>((sum, n) => sum + (n ?? 0), 0), ...new Array<undefined>(actors - 1).fill(undefined)] })
  private readonly window: WindowAssigner
  private readonly lateness: number
  private readonly aggregate: WindowAggregation<In, Acc, Out>
  private readonly lateOutput: string | false
  private readonly lateOutputExplicit: boolean

  constructor(options: WindowAggregateOptions<In, Acc, Out>) {
    super()
    const lateness = options.allowedLatenessMs ?? 0
    if (!Number.isSafeInteger(lateness) || lateness < 0) throw new ConfigError('allowedLatenessMs', `must be a whole number of ms >= 0, got ${lateness}`)
    if (options.window.kind === 'session' && options.aggregate.merge === undefined) throw new ConfigError('aggregate.merge', 'is required for session windows, to combine the accumulators of sessions that merge')
    this.window = options.window
    this.lateness = lateness
    this.aggregate = options.aggregate
    this.lateOutput = options.lateOutput ?? 'late'
    this.lateOutputExplicit = options.lateOutput !== undefined
  }

  onRecord(record: StreamRecord<In>, ctx: Context<Out>): void {
    const panes = this.panes.get() ?? {}
    const next = this.window.kind === 'session' ? this.addToSession(this.window.gap, panes, record, ctx) : this.addToAligned(this.window, panes, record, ctx)
    if (next === undefined) this.drop(record, ctx)
    else this.panes.set(next)
  }

  override onTimer(timer: Timer, ctx: Context<Out>): void {
    if (timer.domain !== 'event-time') return
    const panes = this.panes.get()
    if (panes === undefined) return
    let next: Record<string, Pane<Acc>> | undefined
    for (const [id, pane] of Object.entries(panes)) {
      const last = pane.end - 1
      if (last === timer.time) this.fire(pane, timer.key, ctx)
      if (last + this.lateness <= timer.time) {
        next ??= { ...panes }
        delete next[id]
      }
    }
    if (next === undefined) return
    if (Object.keys(next).length === 0) this.panes.clear()
    else this.panes.set(next)
  }

  /** Adds the record to every window of it that is still open; undefined if none is. */
  private addToAligned(window: Exclude<WindowAssigner, { kind: 'session' }>, panes: Panes<Acc>, record: StreamRecord<In>, ctx: Context<Out>): Panes<Acc> | undefined {
    let next: Record<string, Pane<Acc>> | undefined
    for (const w of alignedWindows(window, record.timestamp)) {
      if (this.isExpired(w, ctx.watermark)) continue
      const id = String(w.start)
      const open = panes[id]
      const pane: Pane<Acc> = { start: w.start, end: w.end, acc: this.aggregate.add(open?.acc ?? this.aggregate.create(), record.value, record) }
      next ??= { ...panes }
      next[id] = pane
      // An open window's timers were registered as it opened, and an aligned window's are
      // never deleted: registering them again per record was 15 % of Nexmark q5's CPU.
      this.schedule(pane, record.key, ctx, open === undefined)
    }
    return next
  }

  /**
   * Opens the record's session and merges it with the sessions it touches (their timers
   * deleted, so a merged-away session never fires); undefined if the record is too late.
   * As in Flink, lateness is judged on the merged session: a record behind the watermark
   * that extends a session still open is kept.
   */
  private addToSession(gap: number, panes: Panes<Acc>, record: StreamRecord<In>, ctx: Context<Out>): Panes<Acc> | undefined {
    const { merged, absorbed } = mergeSession(Object.values(panes), { start: record.timestamp, end: record.timestamp + gap })
    if (this.isExpired(merged, ctx.watermark)) return undefined
    const merge = this.aggregate.merge!
    const acc = absorbed.length === 0 ? this.aggregate.create() : absorbed.map((p) => p.acc).reduce((a, b) => merge(a, b))
    const pane: Pane<Acc> = { ...merged, acc: this.aggregate.add(acc, record.value, record) }
    const next: Record<string, Pane<Acc>> = { ...panes }
    for (const p of absorbed) delete next[String(p.start)]
    next[String(pane.start)] = pane
    this.deleteTimersOf(absorbed, Object.values(next), ctx)
    this.schedule(pane, record.key, ctx)
    return next
  }

  /** A window is expired (can no longer change) once the watermark passed its end plus the allowed lateness. */
  private isExpired(w: Window, watermark: number): boolean {
    return w.end - 1 + this.lateness <= watermark
  }

  /**
   * The firing timer (or, past it, a late firing now) and the cleanup timer of an updated
   * window; `register` false: its timers are registered already, only a late firing is left.
   */
  private schedule(pane: Pane<Acc>, key: string | null, ctx: Context<Out>, register = true): void {
    const last = pane.end - 1
    if (last <= ctx.watermark) this.fire(pane, key, ctx)
    else if (register) ctx.timers.registerEventTime(last)
    // With no lateness the firing timer also frees the window.
    if (register && this.lateness > 0) ctx.timers.registerEventTime(last + this.lateness)
  }

  /** Deletes the pending timers of `removed` windows that no window in `kept` still needs (timers are per key and time). */
  private deleteTimersOf(removed: readonly Pane<Acc>[], kept: readonly Pane<Acc>[], ctx: Context<Out>): void {
    if (removed.length === 0) return
    const needed = new Set(kept.flatMap((p) => [p.end - 1, p.end - 1 + this.lateness]))
    for (const p of removed) {
      for (const time of [p.end - 1, p.end - 1 + this.lateness]) {
        if (time > ctx.watermark && !needed.has(time)) ctx.timers.deleteEventTime(time)
      }
    }
  }

  private fire(pane: Pane<Acc>, key: string | null, ctx: Context<Out>): void {
    ctx.emit(key, this.aggregate.result(pane.acc, { start: pane.start, end: pane.end }, key), { timestamp: pane.end - 1 })
  }

  /** A record no open window takes: counted, and sent to the late output if there is one. */
  private drop(record: StreamRecord<In>, ctx: Context<Out>): void {
    this.dropped.set((this.dropped.get() ?? 0) + 1)
    if (this.lateOutput === false) return
    // The default output is optional; a name given explicitly must be declared (emitTo says so if not).
    if (this.lateOutputExplicit || ctx.sideOutputs.includes(this.lateOutput)) ctx.emitTo(this.lateOutput, record.key, record.value, { timestamp: record.timestamp })
  }
}
