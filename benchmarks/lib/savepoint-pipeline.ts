/**
 * The savepoint benchmark's pipeline: a source of records i = 0, 1, … with key `k${i % keys}`
 * keyed into `state`, which keeps one `value<number>` per key (the last i it saw). The
 * source's reach is set from outside (`feed`): it emits up to `feed.limit` and then idles
 * instead of finishing, so the same pipeline builds the state, runs under load, is stopped,
 * savepointed and restarted, and restored elsewhere without a source that ended.
 */
import { Pipeline } from '../../runtime/api/pipeline.ts'
import { Processor, Source, type Context, type SourceContext, type SourceStatus, type StreamRecord } from '../../runtime/api/processor.ts'

/** Records emitted per `poll` call (the actor ends a micro-batch at maxBatch anyway). */
const PER_POLL = 5000

/** What the benchmark steers: how far the source may go, how fast, and the state stage's hooks. */
export interface Feed {
  /** The source emits records i < limit (all actors together), then idles. */
  limit: number
  /** At most this many records/s (all actors together); undefined: as fast as it can. */
  ratePerSec: number | undefined
  /** A state actor restored and opened (after its changelog replay). */
  opened(partition: number): void
}

export const feed: Feed = { limit: 0, ratePerSec: undefined, opened: () => undefined }

class KeysSource extends Source<number> {
  readonly next = this.state.actorValue<number>('next')
  private windowStart = 0
  private windowEmitted = 0

  constructor(private readonly keys: number) {
    super()
  }

  poll(ctx: SourceContext<number>): SourceStatus | Promise<SourceStatus> {
    const step = ctx.partitions
    let n = this.next.get() ?? ctx.partition
    let budget = PER_POLL
    if (feed.ratePerSec !== undefined) {
      const now = Date.now()
      if (now - this.windowStart >= 100) {
        this.windowStart = now
        this.windowEmitted = 0
      }
      budget = Math.min(budget, Math.ceil(feed.ratePerSec / step / 10) - this.windowEmitted)
    }
    const limit = feed.limit
    const keys = this.keys
    let k = 0
    for (; k < budget && n < limit; k++, n += step) ctx.emit('k' + (n % keys), n)
    this.windowEmitted += k
    this.next.set(n)
    if (k === 0) return 'idle'
    // Yield to the event loop, as a source doing I/O would (benchmarks/lib/pipelines.ts says why).
    return new Promise<SourceStatus>((resolve) => setImmediate(resolve, 'more'))
  }
}

class LastSeen extends Processor<number, never> {
  readonly last = this.state.value<number>('last')

  override open(ctx: { partition: number }): void {
    feed.opened(ctx.partition)
  }

  onRecord(r: StreamRecord<number>, _ctx: Context<never>): void {
    this.last.set(r.value)
  }
}

/** `keys` (sourceActors) keyed into `state` (stateActors), one value per key. */
export function savepointPipeline(name: string, keys: number, sourceActors: number, stateActors: number): Pipeline {
  const p = new Pipeline(name)
  p.source<number>('keys', () => new KeysSource(keys), { partitions: sourceActors })
    .keyBy(stateActors)
    .process<never>('state', LastSeen)
  return p
}
