/**
 * The progress channel on real NATS: every actor of a running pipeline publishes
 * schema-valid progress events about once an interval with its watermark, counts and
 * commits; every worker publishes health with the topology; watermarks reach the end of
 * input; and the worker's Prometheus metrics show the same figures.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, startEmbedded, type Context, type StreamRecord } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { actorProgress, progressSubjects, workerHealth, type ActorProgress, type WorkerHealth } from '../../runtime/control/progress.ts'
import { removeDir, tempDataDir } from '../../testing/index.ts'
import { requireService } from '../support/services.ts'

const nats = await requireService('nats')
const dirs: string[] = []

class Count extends Processor<number, number> {
  private readonly n = this.state.value<number>('n')
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    const n = (this.n.get() ?? 0) + 1
    this.n.set(n)
    ctx.emit(r.key, n)
  }
}

function pipeline(name: string): Pipeline {
  const p = new Pipeline(name)
  p.source<number>('numbers', () => new GeneratorSource<number>({ count: 4000, ratePerSecond: 4000, generate: (i) => ({ key: `k${i % 13}`, value: i, timestamp: 1_000_000 + i }) }), { partitions: 2 })
    .keyBy(3)
    .process('count', Count)
  return p
}

describe.skipIf(!nats.available)('progress channel on NATS', () => {
  it('every actor reports schema-valid progress about once an interval, watermarks advance to the end of input, and the worker reports health with the topology', async () => {
    const bus = await NatsBus.connect({ servers: [nats.url], name: 'progress-test' })
    const cluster = `t${process.pid}`
    const progress: ActorProgress[] = []
    const health: WorkerHealth[] = []
    const invalid: unknown[] = []
    bus.subscribe(progressSubjects.allProgress(cluster), (m) => {
      const e = actorProgress.safeParse(m)
      if (e.success) progress.push(e.data)
      else invalid.push(e.error.issues)
    })
    bus.subscribe(progressSubjects.allHealth(cluster), (m) => {
      const e = workerHealth.safeParse(m)
      if (e.success) health.push(e.data)
      else invalid.push(e.error.issues)
    })
    const d = tempDataDir('weir-progress-')
    dirs.push(d)
    const p = pipeline('progress')
    const run = await startEmbedded(p, { dataDir: d, bus, cluster, epochIntervalMs: 100, progressIntervalMs: 200 })
    const metricsDuringRun = await new Promise<string>((resolve) => setTimeout(() => resolve(run.metrics.metrics()), 600))
    const result = await run.done
    await new Promise((r) => setTimeout(r, 300))
    await bus.close()

    expect(invalid).toEqual([])
    const actors = ['numbers/0', 'numbers/1', 'count/0', 'count/1', 'count/2']
    for (const a of actors) {
      const events = progress.filter((e) => e.actor === a)
      // ~2 s run at 200 ms intervals, plus watermark-change events.
      expect(events.length, a).toBeGreaterThanOrEqual(4)
      const marks = events.map((e) => e.watermark).filter((w): w is number => w !== null)
      expect(marks, `${a} watermark never moves back`).toEqual([...marks].sort((x, y) => x - y))
      expect(events.some((e) => e.lastEpoch > 0 && e.lastCommitAt !== null), a).toBe(true)
      expect(events.every((e) => e.cluster === cluster && e.pipeline === 'progress')).toBe(true)
    }
    // The counting actors' watermark follows the slower source partition and ends with the input.
    const last = (a: string): ActorProgress => progress.filter((e) => e.actor === a).at(-1)!
    for (const a of ['count/0', 'count/1', 'count/2']) {
      const mid = progress.filter((e) => e.actor === a && e.watermark !== null && !e.ended)
      expect(mid.length, `${a} saw intermediate watermarks`).toBeGreaterThan(0)
      expect(mid.every((e) => e.watermark! >= 1_000_000 - 1 && e.watermark! < 1_004_000)).toBe(true)
      expect(mid.some((e) => e.endToEndMs !== null && e.ingestHorizon !== null)).toBe(true)
    }
    const totalIn = ['count/0', 'count/1', 'count/2'].reduce((n, a) => n + last(a).recordsIn, 0)
    expect(totalIn).toBe(result.stats['count/0']!.recordsIn + result.stats['count/1']!.recordsIn + result.stats['count/2']!.recordsIn)
    expect(totalIn).toBeGreaterThan(0)

    expect(health.length).toBeGreaterThanOrEqual(3)
    const h = health.at(-1)!
    expect(h.topology.stages.map((s) => s.name)).toEqual(['numbers', 'count'])
    expect(h.topology.outputs).toEqual(['count'])
    expect(h.rssBytes).toBeGreaterThan(0)
    expect(health.some((x) => x.actors.length === 5)).toBe(true)

    expect(metricsDuringRun).toMatch(/weir_actor_records_in_total\{pipeline="progress",stage="count",partition="0"\} \d+/)
    expect(metricsDuringRun).toMatch(/weir_actor_watermark_seconds\{pipeline="progress",stage="count",partition="\d"\} 1\d{3}/)
    expect(metricsDuringRun).toContain('weir_worker_process_resident_memory_bytes')
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
