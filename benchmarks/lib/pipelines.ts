/**
 * The word-count pipelines the benchmarks run: a deterministic source of `word-${i % keys}`
 * records and a keyed counting stage with one `value<number>` per word.
 */
import { Pipeline } from '../../runtime/api/pipeline.ts'
import { Processor, Source, type Context, type SourceContext, type SourceStatus, type StreamRecord } from '../../runtime/api/processor.ts'

/** Records emitted per `poll` call (the actor ends a micro-batch at maxBatch anyway). */
const PER_POLL = 1000

/**
 * Emits record i = 0, 1, ... `total - 1` (this actor's share: i ≡ partition mod partitions)
 * with key and value `word-${i % keys}`. `total` = Infinity never ends. With `ratePerSec`,
 * the source emits at most that many records per second (all actors together), as a
 * stream with that input rate would; beyond it, poll reports 'idle'.
 */
export class WordsSource extends Source<string> {
  readonly next = this.state.actorValue<number>('next')
  private readonly total: number
  private readonly keys: number
  private readonly ratePerSec: number | undefined
  private startedAt = 0
  private emittedHere = 0

  constructor(total: number, keys: number, ratePerSec?: number) {
    super()
    this.total = total
    this.keys = keys
    this.ratePerSec = ratePerSec
  }

  poll(ctx: SourceContext<string>): SourceStatus | Promise<SourceStatus> {
    const step = ctx.partitions
    let n = this.next.get() ?? ctx.partition
    let budget = PER_POLL
    if (this.ratePerSec !== undefined) {
      const now = Date.now()
      if (this.startedAt === 0) this.startedAt = now
      const allowed = Math.floor(((now - this.startedAt) / 1000) * (this.ratePerSec / step)) + 1
      budget = Math.min(budget, allowed - this.emittedHere)
      if (budget <= 0) return 'idle'
    }
    const total = this.total
    const keys = this.keys
    let k = 0
    for (; k < budget && n < total; k++, n += step) {
      const w = 'word-' + (n % keys)
      ctx.emit(w, w)
    }
    this.emittedHere += k
    this.next.set(n)
    if (n >= total) return 'done'
    // Yield to the event loop, as a source doing real I/O would: the actor's loop only awaits
    // microtasks around a synchronous poll, so without this no epoch timer could fire until
    // the source is done (see benchmarks/HISTORY.md, "Runtime performance problems found").
    return new Promise<SourceStatus>((resolve) => setImmediate(resolve, 'more'))
  }
}

/** Hooks the benchmark uses to time a count actor from the outside. */
export interface CountObserver {
  /** The actor restored its state (called from `open`). */
  opened?(partition: number): void
  /** The first record this instance processed. */
  firstRecord?(partition: number): void
}

/** Word count: one counter per key in keyed state; optionally emits the new count. */
export class Count extends Processor<string, number> {
  readonly count = this.state.value<number>('count')
  /** Records processed by this instance. */
  processed = 0
  /** `processed` at each barrier, in order: checkpoint i (1-based) covers covers[i - 1] records. */
  readonly covers: number[] = []
  partition = -1
  private readonly emit: boolean
  private readonly observer: CountObserver | undefined

  constructor(emit: boolean, observer?: CountObserver) {
    super()
    this.emit = emit
    this.observer = observer
  }

  override open(ctx: { partition: number }): void {
    this.partition = ctx.partition
    this.observer?.opened?.(ctx.partition)
  }

  onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
    if (this.processed++ === 0) this.observer?.firstRecord?.(this.partition)
    const n = (this.count.get() ?? 0) + 1
    this.count.set(n)
    if (this.emit) ctx.emit(r.key, n)
  }

  override onCheckpoint(): void {
    this.covers.push(this.processed)
  }
}

export interface WordCountShape {
  /** Records the source emits in total (Infinity: unbounded). */
  records: number
  keys: number
  /** Source actors. */
  sourcePartitions: number
  /** Partitions of the keyed topic = count actors. */
  partitions: number
  emit: boolean
  ratePerSec?: number
  observer?: CountObserver
  /** Receives every Count instance the runtime creates. */
  counters?: Count[]
}

/** `words` only: pre-loads the keyed input topic. Same stage shape as in the full pipeline. */
export function preloadPipeline(name: string, s: WordCountShape): Pipeline {
  const p = new Pipeline(name)
  p.source<string>('words', () => new WordsSource(s.records, s.keys, s.ratePerSec), { partitions: s.sourcePartitions }).keyBy(s.partitions)
  return p
}

/** `words` keyed by word into `count`. */
export function wordCountPipeline(name: string, s: WordCountShape): Pipeline {
  const p = new Pipeline(name)
  p.source<string>('words', () => new WordsSource(s.records, s.keys, s.ratePerSec), { partitions: s.sourcePartitions })
    .keyBy(s.partitions)
    .process<number>('count', () => {
      const c = new Count(s.emit, s.observer)
      s.counters?.push(c)
      return c
    })
  return p
}

/** The count of `word-${j}` after records 0..records-1 were counted. */
export function expectedCount(j: number, records: number, keys: number): number {
  return j >= records ? 0 : Math.floor((records - 1 - j) / keys) + 1
}
