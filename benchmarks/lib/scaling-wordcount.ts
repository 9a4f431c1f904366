/**
 * The scaling benchmark's pipeline file, run by every `weir worker` of the cluster:
 * examples/wordcount.ts's SplitWords and CountWords reading the benchmark's pre-loaded input
 * topic (`Pipeline.fromTopic`, so the pipeline is unbounded: it runs until stopped) and
 * writing each word's new count to the benchmark's output topic, keyed by word.
 *
 * @example
 * weir worker benchmarks/lib/scaling-wordcount.ts --pipe kafka://127.0.0.1:9092 --bus nats://127.0.0.1:4222 \
 *   --param name=bench-scale-x --param input=bench.lines.x --param input-partitions=2 --param output=bench.counts.x
 */
import { Pipeline } from '../../index.ts'
import { CountWords, SplitWords } from '../../examples/wordcount.ts'

/** Partitions of the word-keyed topic (count actors), and of the output topic. */
export const COUNT_PARTITIONS = 4

function required(params: Record<string, string>, key: string): string {
  const v = params[key]
  if (v === undefined || v === '') throw new Error(`scaling-wordcount: --param ${key}=… is required`)
  return v
}

export default function scalingWordcount(params: Record<string, string> = {}): Pipeline {
  const p = new Pipeline(required(params, 'name'))
  p.fromTopic<string>('lines', { topic: required(params, 'input'), partitions: Number(required(params, 'input-partitions')), codec: 'string' })
    .process('split', SplitWords)
    .keyBy(Number(params['count-partitions'] ?? COUNT_PARTITIONS))
    // JSON writes a count as its decimal string, which benchmarks/lib/kafka-readback.ts reads back.
    .process('count', CountWords, { topic: required(params, 'output'), codec: 'json' })
  return p
}
