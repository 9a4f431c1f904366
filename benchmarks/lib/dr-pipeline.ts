/**
 * The disaster-recovery drill's pipeline file (benchmarks/disaster-recovery.ts), run by
 * `weir worker`s at both sites and by `weir savepoint`: a source → keyBy → a count per key.
 * Source partition p first writes each of its `keys / partitions` keys once, as fast as it
 * can (the state to carry), then a trickle of `rate` records a second (steady load) over
 * the same keys, forever. Its position is actor state, so a restored source resumes there.
 * `build=true` makes the source idle after the first pass: the drill builds the state in an
 * embedded run and stops it once every key was counted.
 *
 * @example
 * weir worker benchmarks/lib/dr-pipeline.ts --pipe kafka://127.0.0.1:9092 --bus nats://127.0.0.1:4222 \
 *   --param name=dr-x --param keys=100000
 */
import { Pipeline, Processor, Source, type Context, type SourceContext, type SourceStatus, type StreamRecord } from '../../index.ts'

class KeysThenTrickle extends Source<number> {
  private readonly next = this.state.actorValue<number>('next')
  private trickleFrom = -1
  private trickleStarted = 0

  constructor(private readonly keysPerPartition: number, private readonly rate: number, private readonly build: boolean) {
    super()
  }

  poll(ctx: SourceContext<number>): SourceStatus {
    const i = this.next.get() ?? 0
    if (i >= this.keysPerPartition) {
      if (this.build) return 'idle'
      if (this.trickleFrom < 0) {
        this.trickleFrom = i
        this.trickleStarted = Date.now()
      }
      if (i - this.trickleFrom >= ((Date.now() - this.trickleStarted) / 1000) * this.rate) return 'idle'
    }
    ctx.emit(`p${ctx.partition}-${i % this.keysPerPartition}`, i)
    this.next.set(i + 1)
    return 'more'
  }
}

class CountPerKey extends Processor<number, number> {
  private readonly count = this.state.value<number>('count')
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    const n = (this.count.get() ?? 0) + 1
    this.count.set(n)
    // Only the trickle's counts are output: the first pass builds state, as a backfill would.
    if (n > 1) ctx.emit(r.key, n)
  }
}

export default function drPipeline(params: Record<string, string> = {}): Pipeline {
  const keys = Number(params.keys ?? 100_000)
  const partitions = Number(params.partitions ?? 2)
  const rate = Number(params.rate ?? 100)
  const build = params.build === 'true'
  const p = new Pipeline(params.name ?? 'dr')
  p.source<number>('ids', () => new KeysThenTrickle(Math.ceil(keys / partitions), rate, build), { partitions })
    .keyBy(Number(params.actors ?? 2))
    .process<number>('count', () => new CountPerKey())
  return p
}
