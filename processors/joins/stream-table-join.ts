/**
 * Event-time stream-table join (Flink's temporal join, `FOR SYSTEM_TIME AS OF` the stream
 * record's time): a stream record waits in keyed state until the watermark reaches its
 * time, then joins the version of the table row that was valid at that time. Table
 * versions are keyed state too, pruned to the ones a future lookup can still need.
 */
import { ConfigError, Processor, type Context, type StreamRecord, type Timer } from '../../index.ts'
import { LateRecords, sideOf, sumToFirst, type LateOutput } from './late.ts'

/**
 * Options of a `StreamTableJoin`.
 *
 * @example
 * { join: (order, rate) => (rate === undefined ? undefined : { ...order, eur: order.amount * rate.toEur }) }
 */
export interface StreamTableJoinOptions<S, T, Out> {
  /**
   * Makes the output of a stream record and the table row of its key valid at its time
   * (undefined: the key had no row then, or it was deleted). Returning undefined emits
   * nothing. The output is emitted under the record's key at the record's time.
   */
  join(stream: S, row: T | undefined): Out | undefined
  /** Only stream records whose key has a row at their time are joined (an inner join). Default false: `join` also gets those without. */
  inner?: boolean
  /**
   * The side output late stream records go to (at or below the watermark when they come:
   * the row versions of their time may be pruned). Default 'late' when the stage declares
   * it in `sideOutputs`; false only counts them (actor state `stream-table-join.dropped`).
   */
  lateOutput?: LateOutput
}

/** A table row of a key from time `t` on; null: deleted from `t` on. */
interface Version<T> {
  readonly t: number
  readonly row: T | null
}

/** A stream record waiting for the watermark to reach its time. */
interface Waiting<S> {
  readonly t: number
  readonly value: S
}

/**
 * Joins input 0 (the stream) with input 1 (a table's changelog: the latest row per key; a
 * record without a value, or null, deletes the key's row) of a `connect`ed stage. Both
 * inputs must be keyed alike, by the table's key.
 *
 * Event-time correct and deterministic: a stream record at t is joined once the stage's
 * watermark (the minimum of both inputs') reaches t, with the newest row version at or
 * before t, so a table update that comes after a stream record but is older in event time
 * is still seen, and one that is newer is not. Two table updates of a key at the same time
 * count in the order they arrive. A stream record at or below the watermark when it comes
 * is late and dropped (counted; see `lateOutput`); a late table update is still applied,
 * for the stream records still to come.
 *
 * Unlike Kafka Streams' `KStream#join(KTable)`, which joins each stream record with the
 * table as it is when the record is processed (processing time, so the result depends on
 * which topic was read first), this join waits for the watermark: results lag by the
 * inputs' out-of-orderness, and the table input must carry watermarks (a table that stops
 * changing should have a source with an `idleTimeoutMs`, or it holds the stage back).
 *
 * State per key: the stream records waiting for the watermark, and the table versions
 * from the newest one at or before the watermark on (a deleted row leaves nothing once the
 * watermark passes its deletion); each stored as one value. One event-time timer per
 * waiting record's time and per table update's time.
 *
 * @example
 * // each order in euros at the rate of its currency valid when it was placed
 * orders.keyBy((o) => o.currency, 4)
 *   .connect(rates.keyBy((r) => r.currency, 4))
 *   .process('orders-eur', () => new StreamTableJoin<Order, Rate, OrderEur>({
 *     inner: true, join: (order, rate) => ({ id: order.id, eur: order.amount * rate!.toEur }),
 *   }))
 */
export class StreamTableJoin<S, T, Out> extends Processor<S | T, Out> {
  private readonly versions = this.state.value<ReadonlyArray<Version<T>>>('stream-table-join.table')
  private readonly waiting = this.state.value<ReadonlyArray<Waiting<S>>>('stream-table-join.waiting')
  private readonly dropped = this.state.actorValue<number>('stream-table-join.dropped', { rescale: sumToFirst })
  private readonly joinRow: StreamTableJoinOptions<S, T, Out>['join']
  private readonly inner: boolean
  private readonly late: LateRecords

  constructor(options: StreamTableJoinOptions<S, T, Out>) {
    super()
    if (typeof options.join !== 'function') throw new ConfigError('join', 'must be a function (stream, row) => output')
    this.joinRow = options.join
    this.inner = options.inner ?? false
    this.late = new LateRecords(options.lateOutput)
  }

  onRecord(record: StreamRecord<S | T>, ctx: Context<Out>): void {
    const t = record.timestamp
    if (sideOf(record, 'StreamTableJoin') === 1) {
      this.applyUpdate(t, (record.value ?? null) as T | null, ctx.watermark)
      // Once the watermark passes it, the versions before it can go (onTimer prunes).
      if (t > ctx.watermark) ctx.timers.registerEventTime(t)
      return
    }
    if (t <= ctx.watermark) {
      this.dropped.set((this.dropped.get() ?? 0) + 1)
      this.late.send(record, ctx as Context<unknown>)
      return
    }
    this.waiting.set([...(this.waiting.get() ?? []), { t, value: record.value as S }])
    ctx.timers.registerEventTime(t)
  }

  /** The watermark reached `timer.time`: the stream records waiting for it join the rows valid at their times, and older row versions go. */
  override onTimer(timer: Timer, ctx: Context<Out>): void {
    if (timer.domain !== 'event-time') return
    const waiting = this.waiting.get() ?? []
    const due = waiting.filter((w) => w.t <= timer.time).sort((a, b) => a.t - b.t)
    const rest = waiting.filter((w) => w.t > timer.time)
    const versions = this.versions.get() ?? []
    for (const w of due) {
      const row = validAt(versions, w.t)
      if (this.inner && row === undefined) continue
      const out = this.joinRow(w.value, row)
      if (out !== undefined) ctx.emit(timer.key, out, { timestamp: w.t })
    }
    if (rest.length === 0) this.waiting.clear()
    else this.waiting.set(rest)
    this.prune(versions, rest, ctx.watermark)
  }

  /** Inserts a row version at its time (after others of the same time), then prunes what no lookup can need. */
  private applyUpdate(t: number, row: T | null, watermark: number): void {
    const versions = [...(this.versions.get() ?? [])]
    let at = versions.length
    while (at > 0 && versions[at - 1]!.t > t) at--
    versions.splice(at, 0, { t, row })
    this.prune(versions, this.waiting.get() ?? [], watermark, true)
  }

  /**
   * Keeps the versions a lookup can still need: the earliest time looked up from now on is
   * the earliest waiting record's or the next after the watermark; the version valid then
   * and every newer one stay.
   */
  private prune(versions: ReadonlyArray<Version<T>>, waiting: ReadonlyArray<Waiting<S>>, watermark: number, changed = false): void {
    const earliest = waiting.reduce((m, w) => Math.min(m, w.t), watermark + 1)
    let first = 0
    for (let i = 0; i < versions.length && versions[i]!.t <= earliest; i++) first = i
    let kept = first === 0 ? versions : versions.slice(first)
    // A deletion that is the oldest version left stands for no row at all.
    if (kept.length > 0 && kept[0]!.row === null && kept[0]!.t <= earliest) kept = kept.slice(1)
    if (!changed && kept === versions) return
    if (kept.length === 0) this.versions.clear()
    else this.versions.set(kept)
  }
}

/** The row of the newest version at or before `t`; undefined when there is none or it is a deletion. */
function validAt<T>(versions: ReadonlyArray<Version<T>>, t: number): T | undefined {
  for (let i = versions.length - 1; i >= 0; i--) {
    const v = versions[i]!
    if (v.t <= t) return v.row ?? undefined
  }
  return undefined
}
