/**
 * A real pipeline for the monitor's inspect tests: words (2 partitions, all emitted at once,
 * then idle forever, so the run stays up and its state stops changing) keyed into a count
 * (3 partitions) that serves the views `counts` (the count) and `totals` (a projection),
 * run embedded on a given bus, with the inspect responder a worker answers the monitor with.
 *
 * @example
 * const fx = await startInspectRun(bus, { cluster: 'c1', name: 'words' })
 * await fx.settled()          // every count committed
 * await fx.stop()
 */
import { randomUUID } from 'node:crypto'
import { Pipeline, Processor, Source, type Context, type SourceContext, type SourceStatus, type StreamRecord } from '../../index.ts'
import { startEmbedded, type RunningPipeline } from '../../runner/embedded-runner.ts'
import type { ControlBus } from '../../runtime/control/bus.ts'
import { ViewClient } from '../../runtime/views/view-client.ts'
import { removeDir, tempDataDir } from '../../testing/index.ts'

export const WORDS = ['ant', 'antelope', 'anthem', 'bee', 'beetle', 'cat', 'cow', 'dog', 'eel', 'fox', 'gnu'] as const
export const PER_PARTITION = 200
const SOURCE_PARTITIONS = 2

/** Record i of source partition p: the word it counts. */
function wordOf(i: number, partition: number): string {
  return WORDS[(i * 3 + partition * 5 + (i >> 4)) % WORDS.length]!
}

/** What the counts come to once every record is counted. */
export function expectedCounts(): Record<string, number> {
  const out: Record<string, number> = {}
  for (let p = 0; p < SOURCE_PARTITIONS; p++) for (let i = 0; i < PER_PARTITION; i++) out[wordOf(i, p)] = (out[wordOf(i, p)] ?? 0) + 1
  return out
}

/** Emits its whole share in its first poll (one checkpoint), then idles: unbounded, but all there at once. */
class Words extends Source<number> {
  private readonly sent = this.state.actorValue<boolean>('sent')
  override poll(ctx: SourceContext<number>): SourceStatus {
    if (this.sent.get() !== true) {
      for (let i = 0; i < PER_PARTITION; i++) ctx.emit(wordOf(i, ctx.partition), 1)
      this.sent.set(true)
    }
    return 'idle'
  }
}

export interface Counted {
  word: string
  n: number
}

/** A running count per word; each record out carries the new count and a header. */
class Count extends Processor<number, Counted> {
  private readonly count = this.state.value<number>('count')
  override onRecord(r: StreamRecord<number>, ctx: Context<Counted>): void {
    const n = (this.count.get() ?? 0) + r.value
    this.count.set(n)
    ctx.emit(r.key, { word: r.key!, n }, { headers: { 'x-counted-by': Buffer.from('count') } })
  }
}

/** Edges keep their records (purgeConsumedRecords: false), so a sample of any stage has some. */
export function inspectPipeline(name: string): Pipeline {
  const p = new Pipeline(name, { purgeConsumedRecords: false })
  p.source<number>('words', () => new Words(), { partitions: SOURCE_PARTITIONS })
    .keyBy(3)
    .process('count', Count, { views: { counts: 'count', totals: { state: 'count', project: (n: number, key: string) => ({ word: key, n }) } } })
  return p
}

export interface InspectRun {
  readonly pipeline: Pipeline
  readonly run: RunningPipeline
  readonly cluster: string
  /** A view client on the run's bus: what the dashboard's answers are compared with. */
  readonly views: ViewClient
  /** Resolves once every count is committed and served. */
  settled(withinMs?: number): Promise<void>
  /** Stops the run and its inspect responder: no worker is left to answer. */
  stopWorkers(): Promise<void>
  stop(): Promise<void>
}

/** Starts the pipeline embedded on `bus`: its worker publishes progress and health there and answers views and inspect requests. */
export async function startInspectRun(bus: ControlBus, options: { cluster: string; name?: string }): Promise<InspectRun> {
  const dataDir = tempDataDir()
  const pipeline = inspectPipeline(options.name ?? `insp${randomUUID().slice(0, 6)}`)
  const run = await startEmbedded(pipeline, { dataDir, bus, cluster: options.cluster, epochIntervalMs: 200, progressIntervalMs: 200 })
  const views = new ViewClient(bus, pipeline, { cluster: options.cluster, timeoutMs: 3000 })
  const stopWorkers = async (): Promise<void> => {
    await run.stop()
  }
  const expected = expectedCounts()
  return {
    pipeline,
    run,
    cluster: options.cluster,
    views,
    async settled(withinMs = 15_000) {
      const deadline = Date.now() + withinMs
      for (;;) {
        const page = await views.scan('counts', { limit: 100 }).catch(() => undefined)
        const got = Object.fromEntries((page?.entries ?? []).map((e) => [e.key, e.value]))
        if (JSON.stringify(got) === JSON.stringify(Object.fromEntries(Object.entries(expected).sort()))) return
        if (Date.now() > deadline) throw new Error(`the counts did not settle within ${withinMs} ms: ${JSON.stringify(got)}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    stopWorkers,
    async stop() {
      await stopWorkers()
      removeDir(dataDir)
    },
  }
}
