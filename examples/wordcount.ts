/**
 * Word count: lines → words → a running count per word, written to a JSON-lines file.
 *
 *   npx weir run examples/wordcount.ts
 *   npx weir run examples/wordcount.ts --param lines=1000000
 *   npx weir run examples/wordcount.ts --param rate=100      # 100 lines/s per partition
 */
import { Pipeline, Processor, type Context, type StreamRecord } from '../index.ts'
import { GeneratorSource, JsonlFileSink } from '../processors/index.ts'

const VOCABULARY = ('the quick brown fox jumps over the lazy dog while streams of events flow through pipes ' +
  'and processors keep state in rocks so that nothing is lost and nothing is doubled').split(' ')

/** Splits a line into words, each keyed by itself so the next stage is partitioned by word. */
export class SplitWords extends Processor<string, number> {
  onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
    for (const word of r.value.split(/\s+/)) if (word !== '') ctx.emit(word.toLowerCase(), 1)
  }
}

/** Keeps a count per word and emits the new count. */
export class CountWords extends Processor<number, number> {
  private readonly count = this.state.value<number>('count')
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    const n = (this.count.get() ?? 0) + r.value
    this.count.set(n)
    ctx.emit(r.key, n)
  }
}

export default function wordcount(params: Record<string, string> = {}): Pipeline {
  const lines = Number(params.lines ?? 20_000)
  // Lines per second per source partition; unpaced by default.
  const rate = params.rate === undefined ? undefined : Number(params.rate)
  const out = params.out ?? 'out/wordcount/counts-{partition}.jsonl'
  // Another name keeps two runs apart on a shared Kafka (topics are named after the pipeline).
  // standbys: warm replicas of each actor's state on other workers of a cluster.
  // purge=false keeps the edge topics (to read them back); sink=false ends at the count topic.
  const p = new Pipeline(params.name ?? 'wordcount', { standbys: Number(params.standbys ?? 0), purgeConsumedRecords: params.purge !== 'false' })
  const counts = p.source<string>('lines', () => new GeneratorSource<string>({
    count: lines,
    ratePerSecond: rate,
    // Deterministic text: line i of partition p always has the same words.
    generate: (i, partition) => {
      const n = i * 2 + partition
      const words = Array.from({ length: 8 }, (_, w) => VOCABULARY[(n * 7 + w * 13 + ((n >> 3) % 11)) % VOCABULARY.length])
      return { key: null, value: words.join(' ') }
    },
  }), { partitions: 2 })
    .process('split', SplitWords)
    .keyBy(4)
    .process('count', CountWords, { views: { counts: 'count' } })
  if (params.sink === 'false') return p
  counts.to('sink', () => new JsonlFileSink<number>({ path: out, format: (r) => ({ word: r.key, count: r.value }) }))
  p.describeOutput(`running counts per word: ${out.replace('{partition}', '*')} (the last line per word is its total)`)
  return p
}
