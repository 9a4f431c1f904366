/**
 * A deterministic generator source: record i of partition p is `generate(i, p)`. Its
 * position is actor state committed with what it emitted, so a restarted run continues
 * exactly after the last checkpoint: no record lost, none emitted twice.
 */
import { Source, type SourceContext, type SourceStatus } from '../../index.ts'

export interface Generated<T> {
  key: string | null
  value: T
  /** Event timestamp; default: now. */
  timestamp?: number
}

export interface GeneratorOptions<T> {
  /** Records per partition; undefined = unbounded. */
  count?: number
  /** Records per second per partition; undefined = as fast as possible. */
  ratePerSecond?: number
  /** Returns record `index` of `partition` (of `partitions`), or undefined to end early. */
  generate(index: number, partition: number, partitions: number): Generated<T> | undefined
}

/**
 * @example
 * p.source('numbers', () => new GeneratorSource({ count: 1000, generate: (i) => ({ key: String(i % 10), value: i }) }))
 */
export class GeneratorSource<T> extends Source<T> {
  private readonly next = this.state.actorValue<number>('next')
  private readonly startedAt = Date.now()
  private startIndex = -1

  constructor(private readonly options: GeneratorOptions<T>) {
    super()
  }

  poll(ctx: SourceContext<T>): SourceStatus {
    const i = this.next.get() ?? 0
    if (this.options.count !== undefined && i >= this.options.count) return 'done'
    if (this.options.ratePerSecond !== undefined) {
      if (this.startIndex < 0) this.startIndex = i
      const allowed = ((Date.now() - this.startedAt) / 1000) * this.options.ratePerSecond
      if (i - this.startIndex >= allowed) return 'idle'
    }
    const r = this.options.generate(i, ctx.partition, ctx.partitions)
    if (r === undefined) return 'done'
    ctx.emit(r.key, r.value, r.timestamp === undefined ? undefined : { timestamp: r.timestamp })
    this.next.set(i + 1)
    return 'more'
  }
}
