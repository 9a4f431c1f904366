/**
 * A worker's readiness (runtime/worker-probes.ts) as Kubernetes would see it: not ready
 * while it joins and before its assignment, not ready while its actors replay a changelog,
 * ready once every assigned actor restored and is within the lag bound, and not ready
 * again when a slow stage falls behind its input by more than the bound; live throughout.
 * The cluster case runs a real coordinator service and cluster workers on Kafka and NATS
 * (scripts/services.sh); the lag case an embedded run (its own pipe and bus).
 */
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { startCoordinatorService } from '../../coordinator/coordinator-service.ts'
import { startClusterWorker } from '../../runner/cluster-worker.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { createLogger } from '../../runtime/log.ts'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import type { ProbeResult } from '../../runtime/health.ts'
import { WorkerProbes } from '../../runtime/worker-probes.ts'
import { requireService } from '../support/services.ts'
import { sleep, until } from '../support/weir-cli.ts'
import probePipeline from './fixtures/probe-pipeline.ts'
import { runsAlone } from '../support/file-lock.ts'

// Bounds real processes' timing: no other test file runs beside it (test/support/file-lock.ts).
runsAlone()

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const log = createLogger(process.env.WEIR_LOG_LEVEL ?? 'silent')
const dirs: string[] = []
const cleanups: Array<() => Promise<unknown>> = []
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'weir-probes-'))
  dirs.push(d)
  return d
}
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
})
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

/** Polls `ready()` every 25 ms until it is ok; returns every answer seen. */
async function untilReady(probes: WorkerProbes, withinMs: number): Promise<ProbeResult[]> {
  const seen: ProbeResult[] = []
  const deadline = Date.now() + withinMs
  for (;;) {
    const r = await probes.ready()
    seen.push(r)
    if (r.ok) return seen
    if (Date.now() > deadline) throw new Error(`not ready within ${withinMs} ms; last: ${JSON.stringify(r)}`)
    await sleep(25)
  }
}

const states = (seen: ProbeResult[]): Set<string> => new Set(seen.flatMap((r) => (r.details ?? []).map((d) => String(d.state))))

describe.skipIf(!kafka.available || !nats.available)('a cluster worker\'s readiness on Kafka and NATS', () => {
  it('is 503 while it joins, before its assignment and while it replays a changelog; 200 once restored and caught up', async () => {
    const cluster = `p${randomUUID().slice(0, 8)}`
    const name = `probes-${randomUUID().slice(0, 8)}`
    const coordinatorBus = await NatsBus.connect({ servers: [nats.url], name: 'probes-coordinator', log })
    const workerBus = await NatsBus.connect({ servers: [nats.url], name: 'probes-worker', log })
    const pipe = await KafkaPipe.connect({ brokers: [kafka.url] }, log)
    cleanups.push(() => coordinatorBus.close(), () => workerBus.close(), () => pipe.close())
    const options = { pipe, bus: workerBus, cluster, log, epochIntervalMs: 300, heartbeatMs: 200, joinTimeoutMs: 20_000 }

    // Worker a joins before any coordinator runs: it waits, alive and not ready.
    const probesA = new WorkerProbes({ bus: workerBus, maxLag: 1000 })
    // Paced well within what the count stage keeps up with on a busy machine: unpaced, the
    // source ran hundreds of thousands of records ahead, and a never reached readiness.
    const startingA = startClusterWorker(probePipeline({ name, rate: '4000' }), { ...options, stateDir: tempDir(), id: 'a' })
    cleanups.push(() => startingA.then((a) => a.stop(0)))
    expect(await probesA.ready()).toMatchObject({ ok: false, reason: expect.stringMatching(/joining/) })
    expect(probesA.live()).toEqual({ ok: true })
    const service = startCoordinatorService(coordinatorBus, { cluster, log, epochIntervalMs: 300, workerTimeoutMs: 3000, settleMs: 200, releaseTimeoutMs: 3000 })
    cleanups.push(async () => service.stop())
    const a = await startingA
    probesA.attach(a.worker)
    await untilReady(probesA, 20_000)

    // A source of distinct keys: every record is a changelog record of the count stage.
    const counted = (): number => a.worker.actorList.filter((x) => x.stage.name === 'count').reduce((n, x) => n + x.stats.recordsIn, 0)
    await until(() => counted() >= 20_000, 25_000, 'the count stage counted 20 000 keys')
    await a.stop(5000)
    const changelog = counted()

    // Worker b on an empty state dir: it restores every count actor from the changelog.
    const probesB = new WorkerProbes({ bus: workerBus, maxLag: 1000 })
    const b = await startClusterWorker(probePipeline({ name, rate: '50' }), { ...options, stateDir: tempDir(), id: 'b' })
    cleanups.push(() => b.stop(0))
    probesB.attach(b.worker)
    const seen = await untilReady(probesB, 30_000)
    const replayed = b.worker.actorList.filter((x) => x.stage.name === 'count').reduce((n, x) => n + x.stats.replayedChangelogRecords, 0)
    expect(replayed).toBeGreaterThanOrEqual(changelog * 0.9)
    expect(states(seen), JSON.stringify(seen.slice(0, 5))).toContain('restoring')
    const notReady = seen.filter((r) => !r.ok)
    for (const r of notReady) expect(r.reason).toMatch(/assignment|not restored and caught up/)
    // The count actors replay the changelog: each is named, by stage and partition, while it does.
    const restoring = notReady.flatMap((r) => r.details ?? []).find((d) => d.state === 'restoring' && d.stage === 'count')
    expect(restoring, JSON.stringify(notReady.map((r) => r.details))).toMatchObject({ actor: expect.stringMatching(/^count\/[01]$/), partition: expect.any(Number), forMs: expect.any(Number) })
    expect(seen.at(-1)!.reason).toMatch(/3 assigned actors restored and caught up/)
    expect(probesB.live()).toEqual({ ok: true })
  }, 100_000)
})

describe('an embedded run\'s readiness', () => {
  it('is 503 naming the stage and partition while a slow stage is more than --ready-max-lag records behind, 200 once it caught up', async () => {
    const run = await startEmbedded(probePipeline({ name: 'slow', rate: '500', slowMs: '5', slowForMs: '2000' }), { dataDir: tempDir(), epochIntervalMs: 100, log })
    cleanups.push(() => run.stop())
    const probes = new WorkerProbes({ bus: run.bus, maxLag: 300 })
    probes.attach(run.worker)
    const lagging = await until(async () => {
      const r = await probes.ready()
      return r.details?.find((d) => d.state === 'lagging')
    }, 10_000, 'the slow stage lagging')
    expect(lagging).toMatchObject({ actor: 'slow/0', stage: 'slow', partition: 0 })
    expect(lagging.lag).toBeGreaterThan(300)
    expect(probes.live()).toEqual({ ok: true })
    await untilReady(probes, 15_000)
    await run.stop()
    expect(await probes.ready()).toMatchObject({ ok: false, reason: expect.stringMatching(/leaving/) })
  }, 30_000)
})
