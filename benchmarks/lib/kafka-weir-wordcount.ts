/**
 * weir's contender in the Kafka word count: examples/wordcount.ts's SplitWords and CountWords
 * on the Kafka pipe, reading the benchmark's input topic and writing the counts to its output
 * topic, checkpointing every second. The pipeline is unbounded (an external topic), so the run
 * ends once every count actor has committed a checkpoint that covers its last word.
 */
import { Pipeline } from '../../index.ts'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import { startEmbedded, type RunningPipeline } from '../../runner/embedded-runner.ts'
import { CountWords, SplitWords } from '../../examples/wordcount.ts'
import type { Context, LifecycleContext, StreamRecord } from '../../runtime/api/processor.ts'
import { WORDS_PER_LINE } from './kafka-input.ts'
import type { ContenderRun } from './kafka-raw-wordcount.ts'
import { cpuSecondsSince, wallMs } from './stats.ts'

export interface WeirWordCountOptions {
  brokers: string[]
  /** Pipeline name: unique per run, since it names weir's topics, groups and transactional ids. */
  pipeline: string
  inputTopic: string
  inputPartitions: number
  outputTopic: string
  dataDir: string
  lines: number
  epochIntervalMs: number
  timeoutMs: number
}

/** Partitions of the word-keyed topic (count actors), and of the output topic. */
const COUNT_PARTITIONS = 4

/** What the benchmark observes in the running processors (same process, no IPC). */
class Probe {
  firstRecordAt = 0
  cpuAtFirstRecord: NodeJS.CpuUsage | undefined
  /** Every CountWords instance the runtime made, one per count actor (and one to validate the pipeline). */
  readonly counters: TimedCountWords[] = []
  /** The count actors' processors: opened ones (the validation instance never is). */
  live(): TimedCountWords[] {
    return this.counters.filter((c) => c.partition >= 0)
  }
  wordsCounted(): number {
    return this.live().reduce((s, c) => s + c.processed, 0)
  }
}

/** SplitWords, noting when the first input line arrived. */
class TimedSplitWords extends SplitWords {
  constructor(private readonly probe: Probe) {
    super()
  }

  override onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
    if (this.probe.firstRecordAt === 0) {
      this.probe.firstRecordAt = wallMs()
      this.probe.cpuAtFirstRecord = process.cpuUsage()
    }
    super.onRecord(r, ctx)
  }
}

/** CountWords, noting how many words each barrier covers. */
class TimedCountWords extends CountWords {
  processed = 0
  partition = -1
  /** `processed` at each barrier: checkpoint i (1-based) covers covers[i - 1] words. */
  readonly covers: number[] = []

  override open(ctx: LifecycleContext): void {
    this.partition = ctx.partition
  }

  override onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    this.processed++
    super.onRecord(r, ctx)
  }

  override onCheckpoint(): void {
    this.covers.push(this.processed)
  }
}

/** The checkpoint (1-based) that first covers everything `c` has counted, or 0 if none has been taken yet. */
function coveringCheckpoint(c: TimedCountWords): number {
  const i = c.covers.indexOf(c.processed)
  return i < 0 ? 0 : i + 1
}

/** True once each of `counters` has committed a checkpoint covering all the words it counted. */
function allCommitted(run: RunningPipeline, counters: TimedCountWords[]): boolean {
  const stats = run.stats()
  return counters.every((c) => {
    const needed = coveringCheckpoint(c)
    const committed = stats[`count/${c.partition}`]?.checkpoints ?? 0
    return needed > 0 && committed >= needed
  })
}

/**
 * Runs the pipeline until every word of the input is counted and committed, then stops it.
 *
 * @example
 * const r = await runWeirWordCount({ brokers, pipeline: 'bench-wc-x', inputTopic, inputPartitions: 2, outputTopic, dataDir, lines: 1e6, epochIntervalMs: 1000, timeoutMs: 6e5 })
 */
export async function runWeirWordCount(o: WeirWordCountOptions): Promise<ContenderRun & { lag: number; stopMs: number }> {
  const startedAt = wallMs()
  const words = o.lines * WORDS_PER_LINE
  const probe = new Probe()
  const p = new Pipeline(o.pipeline)
  p.fromTopic<string>('lines', { topic: o.inputTopic, partitions: o.inputPartitions, codec: 'string' })
    .process('split', () => new TimedSplitWords(probe)).keyBy(COUNT_PARTITIONS)
    // CountWords emits numbers: JSON encodes them as their decimal string, like the other contenders' output.
    .process('count', () => {
      const c = new TimedCountWords()
      probe.counters.push(c)
      return c
    }, { topic: o.outputTopic, codec: 'json' })

  const pipe = await KafkaPipe.connect({ brokers: o.brokers })
  const run = await startEmbedded(p, { dataDir: o.dataDir, pipe, epochIntervalMs: o.epochIntervalMs })
  let endAt = 0
  let cpuS = 0
  try {
    const deadline = performance.now() + o.timeoutMs
    await new Promise<void>((resolve, reject) => {
      const poll = setInterval(() => {
        const live = probe.live()
        if (live.length === COUNT_PARTITIONS && probe.wordsCounted() === words && allCommitted(run, live)) {
          endAt = wallMs()
          cpuS = cpuSecondsSince(probe.cpuAtFirstRecord!)
          clearInterval(poll)
          resolve()
        } else if (performance.now() > deadline) {
          clearInterval(poll)
          reject(new Error(`weir: not done after ${o.timeoutMs / 1000} s (${probe.wordsCounted()} of ${words} words counted)`))
        }
      }, 5)
      run.done.then(
        () => { clearInterval(poll); reject(new Error('weir: the pipeline ended before its input was counted')) },
        (err: unknown) => { clearInterval(poll); reject(err) },
      )
    })
    // Not timed: the brief's end condition, checked rather than assumed.
    const lag = await run.measureLag()
    const stopStarted = performance.now()
    const result = await run.stop()
    const stopMs = performance.now() - stopStarted
    const recordsOut = Object.entries(result.stats).filter(([id]) => id.startsWith('count/')).reduce((s, [, a]) => s + a.recordsOut, 0)
    const linesIn = Object.entries(result.stats).filter(([id]) => id.startsWith('split/')).reduce((s, [, a]) => s + a.recordsIn, 0)
    const commits = Math.max(...Object.entries(result.stats).filter(([id]) => id.startsWith('count/')).map(([, a]) => a.checkpoints))
    return {
      firstRecordAt: probe.firstRecordAt,
      endAt,
      startupMs: probe.firstRecordAt - startedAt,
      linesIn,
      recordsOut,
      commits,
      peakRssMiB: process.resourceUsage().maxRSS / 1024,
      cpuS,
      lag,
      stopMs,
    }
  } finally {
    await run.stop().catch(() => undefined)
    await pipe.close()
  }
}
