/**
 * The failover benchmark's pipeline file, run by both `weir worker`s of a run: a count per
 * key over the benchmark's pre-loaded input topic (`Pipeline.fromTopic`, so the pipeline
 * runs until stopped), each new count written to the benchmark's output topic. The count
 * stage reads the topic directly, so it runs one actor per input partition, and actor
 * `count/p` writes output partition `p` (a forward edge): the output partition names the
 * actor that committed a record. Its state is one entry per key.
 *
 * Pre-load records (value `p`) are counted without an output record: they only build the
 * state (and its changelog), and on 2 cores an output record per pre-loaded key would
 * nearly double what building 2M keys of state costs. Every other record's new count is
 * emitted, so each key's output continues 2, 3… from its pre-loaded count.
 *
 * @example
 * weir worker benchmarks/lib/failover-pipeline.ts --pipe kafka://127.0.0.1:9092 --bus nats://127.0.0.1:4222 \
 *   --param name=bench-fo-x-s0 --param input=bench.keys.x --param partitions=2 --param output=bench.counts.x.s0 --param standbys=0
 */
import { Pipeline, Processor, type Context, type StreamRecord } from '../../index.ts'

/** The count stage's name: its actors are `count/0…P-1`, its changelog `weir.<pipeline>.count.changelog`. */
export const COUNT_STAGE = 'count'

/** The value of a pre-load record: counted, not emitted. */
export const PRELOAD_VALUE = 'p'

/** Counts the records of each key and emits the new count, except for pre-load records. */
export class CountPerKey extends Processor<string, number> {
  private readonly count = this.state.value<number>('count')
  onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
    const n = (this.count.get() ?? 0) + 1
    this.count.set(n)
    if (r.value !== PRELOAD_VALUE) ctx.emit(r.key, n)
  }
}

function required(params: Record<string, string>, key: string): string {
  const v = params[key]
  if (v === undefined || v === '') throw new Error(`failover-pipeline: --param ${key}=… is required`)
  return v
}

export default function failoverPipeline(params: Record<string, string> = {}): Pipeline {
  const p = new Pipeline(required(params, 'name'), { standbys: Number(params.standbys ?? 0) })
  p.fromTopic<string>('keys', { topic: required(params, 'input'), partitions: Number(required(params, 'partitions')), codec: 'string' })
    // JSON writes a count as its decimal string, which the benchmark's output tail reads back.
    .process(COUNT_STAGE, CountPerKey, { topic: required(params, 'output'), codec: 'json' })
  return p
}
