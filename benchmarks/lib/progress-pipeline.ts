/**
 * The progress benchmark's pipeline (`weir run benchmarks/lib/progress-pipeline.ts`): a
 * rate-limited generator source stamping each record with the wall clock, feeding a
 * forward processor on the same partitions, so every actor's watermark advances at each
 * checkpoint (about once per epoch). 2 × `partitions` actors publish progress.
 *
 * @example
 * weir run benchmarks/lib/progress-pipeline.ts --bus nats://127.0.0.1:4222 --cluster bench \
 *   --param name=progress-0 --param partitions=32 --param rate=5
 */
import { Pipeline, Processor, type Context, type StreamRecord } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'

/** Passes each record on unchanged: a stage whose watermark follows its input's. */
export class Forward extends Processor<number, number> {
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    ctx.emit(r.key, r.value)
  }
}

function positiveInt(params: Record<string, string>, name: string, fallback: number): number {
  const n = Number(params[name] ?? fallback)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--param ${name}: expected a positive integer, got '${params[name]}'`)
  return n
}

export default function progressPipeline(params: Record<string, string> = {}): Pipeline {
  const partitions = positiveInt(params, 'partitions', 32)
  // Records per second per source partition: enough for a record in every epoch.
  const rate = positiveInt(params, 'rate', 5)
  const p = new Pipeline(params.name ?? 'progress-bench')
  p.source<number>('ticks', () => new GeneratorSource<number>({
    ratePerSecond: rate,
    generate: (i, partition) => ({ key: String(partition), value: i, timestamp: Date.now() }),
  }), { partitions })
    .process<number>('forward', Forward)
  return p
}
