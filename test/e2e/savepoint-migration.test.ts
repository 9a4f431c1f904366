/**
 * Migration by savepoint, with real processes: a stateful pipeline (test/e2e/fixtures/
 * migration-pipeline.ts: keyed value/map/list state, session windows with event-time timers,
 * a source whose position is actor state) is stopped with SIGTERM in the middle of its
 * input, `weir savepoint create` takes its state, and it continues somewhere else:
 *
 * - from the embedded pipe (`weir run`) to Kafka (`weir run --pipe kafka://… --from-savepoint`);
 * - from a cluster on Kafka + NATS at site A (`weir coordinator` + 2 `weir worker`s) to one on
 *   another Kafka + NATS at site B (`weir savepoint restore --pipe kafka://B`, then a
 *   coordinator and workers there), with the keyed stages at other actor counts.
 *
 * Exactly once means: the outputs of the first place (read back from its data dir, or from its
 * Kafka read_committed) plus those of the second equal an uninterrupted run's as multisets
 * (nothing lost, nothing doubled), and the final state in the second place equals the
 * uninterrupted run's. Each test prints one line with what it covered.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import pino from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import type { Pipe } from '../../runtime/pipe/pipe.ts'
import type { Pipeline } from '../../runtime/api/pipeline.ts'
import { multisetDiff, readCommittedState, readStageOutput, runToCompletion, type StageState } from '../../testing/index.ts'
import { TestCluster } from '../support/cluster.ts'
import { requireService } from '../support/services.ts'
import { freePort, sleep, startWeir, tempDirs, until, weir } from '../support/weir-cli.ts'
import migrationPipeline from './fixtures/migration-pipeline.ts'
import { runsAlone } from '../support/file-lock.ts'

// Bounds real processes' timing: no other test file runs beside it (test/support/file-lock.ts).
runsAlone()

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const kafka2 = await requireService('kafka2')
const nats2 = await requireService('nats2')
const tempDir = tempDirs('weir-migration-')
const log = pino({ level: 'silent' })

const FIXTURE = 'test/e2e/fixtures/migration-pipeline.ts'
const OUTPUT_STAGES = ['agg', 'sessions'] as const
const STATE_STAGES = ['events', 'agg', 'sessions'] as const
const EPOCH_MS = '200'

const paramArgs = (params: Record<string, string>): string[] => Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`])

type Outputs = Record<(typeof OUTPUT_STAGES)[number], unknown[]>

async function outputsOf(pipeline: Pipeline, from: string | Pipe): Promise<Outputs> {
  const out = {} as Outputs
  for (const stage of OUTPUT_STAGES) out[stage] = (await readStageOutput(pipeline, from, stage)).map((r) => r.value)
  return out
}

/** What an uninterrupted embedded run of the pipeline outputs and ends with (parallelism does not change either). */
async function reference(params: Record<string, string>, dir: string): Promise<{ outputs: Outputs; state: Record<string, StageState> }> {
  const pipeline = migrationPipeline(params)
  await runToCompletion(pipeline, { dataDir: dir, epochIntervalMs: 100, log })
  const state: Record<string, StageState> = {}
  for (const stage of STATE_STAGES) state[stage] = await readCommittedState(pipeline, dir, stage)
  return { outputs: await outputsOf(pipeline, dir), state }
}

/** Outputs of both places together equal the reference's, and the state the second place ended with equals the reference's. */
async function expectExactlyOnce(label: string, ref: Awaited<ReturnType<typeof reference>>, first: Outputs, second: Outputs, pipeline: Pipeline, secondPipe: Pipe): Promise<void> {
  for (const stage of OUTPUT_STAGES) {
    const diff = multisetDiff(ref.outputs[stage], [...first[stage], ...second[stage]])
    expect({ missing: diff.missing.slice(0, 5), extra: diff.extra.slice(0, 5), counts: [diff.missing.length, diff.extra.length] }, `${label}: ${stage} outputs`).toEqual({ missing: [], extra: [], counts: [0, 0] })
  }
  for (const stage of STATE_STAGES) {
    const got = await readCommittedState(pipeline, secondPipe, stage)
    expect(got.keyed, `${label}: ${stage} keyed state`).toEqual(ref.state[stage]!.keyed)
  }
  // The source's position: every partition at the end of its input, and finished.
  const events = await readCommittedState(pipeline, secondPipe, 'events')
  expect(Object.values(events.actor).map((a) => a.next), `${label}: source positions`).toEqual(Object.values(ref.state.events!.actor).map((a) => a.next))
  expect(events.finished).toEqual(ref.state.events!.finished)
}

const total = (o: Outputs): number => o.agg.length + o.sessions.length

/** What a savepoint held, from `weir savepoint inspect --json`, for the coverage line. */
async function savepointCoverage(sp: string): Promise<{ savepointKeys: number; savepointTimers: number; drainedInFlight: number }> {
  const m = JSON.parse((await weir(['savepoint', 'inspect', sp, '--json'])).stdout) as { drain: { records: number }; stages: Record<string, { actors: Array<{ keys: Record<string, number>; timers: number }> }> }
  const actors = Object.values(m.stages).flatMap((s) => s.actors)
  return {
    savepointKeys: actors.reduce((n, a) => n + Object.values(a.keys).reduce((x, y) => x + y, 0), 0),
    savepointTimers: actors.reduce((n, a) => n + a.timers, 0),
    drainedInFlight: m.drain.records,
  }
}

describe.skipIf(!kafka.available)('migration by savepoint: embedded → Kafka', () => {
  // SIGTERM: the run takes a final checkpoint. SIGKILL: a crashed run, saved from its last checkpoint.
  it.each(['SIGTERM', 'SIGKILL'] as const)('a weir run on the embedded pipe, stopped by %s mid-input, continues on Kafka from its savepoint: outputs exactly once, final state equal', async (signal) => {
    const started = Date.now()
    const dir = tempDir()
    const name = `mig-e2k-${signal.toLowerCase()}-${randomUUID().slice(0, 8)}`
    const base = { name, events: '3000', keys: '60' }
    const ref = await reference({ ...base, agg: '4', sessions: '1' }, join(dir, 'ref'))

    // 1. The embedded run, paced so that it is stopped in the middle of its input.
    const firstParams = { ...base, agg: '2', sessions: '2', rate: '600' }
    const embedded = join(dir, 'embedded')
    const port = await freePort()
    const first = startWeir(['run', FIXTURE, '--data-dir', embedded, '--epoch-ms', EPOCH_MS, '--metrics-port', String(port), '-q', ...paramArgs(firstParams)])
    // Stopped once agg has committed output (a checkpoint after its first emits), whenever a
    // busy machine lets the run start; the input takes 5 s from then, so it is mid-input.
    const metric = async (name: string): Promise<number> => {
      const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '')
      return [...text.matchAll(new RegExp(`^${name}\\{[^}]*stage="agg"[^}]*\\} (\\d+)$`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0)
    }
    await until(async () => (await metric('weir_actor_records_out_total')) > 0, 30_000, 'agg emitting output')
    const checkpointsThen = await metric('weir_actor_checkpoints_total')
    await until(async () => (await metric('weir_actor_checkpoints_total')) > checkpointsThen, 30_000, 'agg committing output')
    first.child.kill(signal)
    const stopped = await first.done
    if (signal === 'SIGTERM') {
      expect(stopped.code, stopped.stderr).toBe(0)
      expect(stopped.stdout).toContain('stopped (final checkpoint taken')
    } else {
      expect(stopped.signal).toBe('SIGKILL')
    }

    // 2. The savepoint of the stopped run, checked as the other site would.
    const sp = join(dir, 'sp')
    const created = await weir(['savepoint', 'create', FIXTURE, '--data-dir', embedded, '--target', sp, ...paramArgs(firstParams)])
    expect(created.code, created.stderr).toBe(0)
    const verified = await weir(['savepoint', 'inspect', sp, '--verify'])
    expect(verified.code, verified.stderr).toBe(0)
    expect(verified.stdout).toMatch(/verified: \d+ files match/)

    // 3. The same pipeline on Kafka, from the savepoint, at other actor counts, on a fresh data dir.
    const secondParams = { ...base, agg: '4', sessions: '1' }
    const second = await weir(['run', FIXTURE, '--pipe', `kafka://${kafka.url}`, '--data-dir', join(dir, 'kafka'), '--from-savepoint', sp, '--epoch-ms', EPOCH_MS, '-q', ...paramArgs(secondParams)])
    expect(second.code, second.stderr).toBe(0)
    expect(second.stdout).toContain('finished')

    const pipe = await KafkaPipe.connect({ brokers: kafka.url.split(',') }, log)
    onTestFinished(() => pipe.close())
    const before = await outputsOf(migrationPipeline(firstParams), embedded)
    const after = await outputsOf(migrationPipeline(secondParams), pipe)
    expect(total(before), 'the first run was stopped after it had output something').toBeGreaterThan(0)
    expect(total(after), 'and before it had output everything').toBeGreaterThan(0)
    await expectExactlyOnce('embedded → kafka', ref, before, after, migrationPipeline(secondParams), pipe)
    console.log(`migration embedded → kafka after ${signal}: ${JSON.stringify({ events: 6000, refOutputs: total(ref.outputs), embeddedOutputs: total(before), kafkaOutputs: total(after), ...(await savepointCoverage(sp)), rescaled: 'agg 2→4, sessions 2→1', ms: Date.now() - started })}`)
  }, 60_000)
})

describe.skipIf(!kafka.available || !nats.available || !kafka2.available || !nats2.available)('migration by savepoint: cluster at site A → cluster at site B', () => {
  it('workers on Kafka+NATS A, SIGTERMed mid-input; savepoint from A restored onto Kafka B; a coordinator and workers on B finish it: outputs on A + B exactly once, final state equal', async () => {
    const started = Date.now()
    const dir = tempDir()
    const name = `mig-a2b-${randomUUID().slice(0, 8)}`
    const cluster = `m${randomUUID().slice(0, 8)}`
    const base = { name, events: '3000', keys: '60' }
    const ref = await reference({ ...base, agg: '3', sessions: '2' }, join(dir, 'ref'))

    // Site A: a coordinator and two workers, the source paced so that the input takes ~8 s.
    const aParams = { ...base, agg: '2', sessions: '2', rate: '400' }
    const a = new TestCluster({ cluster, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs-a') })
    onTestFinished(() => a.killAll())
    onTestFinished((ctx) => {
      if (ctx.task.result?.state === 'fail') console.error(a.logTails(30))
    })
    const pipeA = await KafkaPipe.connect({ brokers: kafka.url.split(',') }, log)
    onTestFinished(() => pipeA.close())
    a.startCoordinator('a-c', ['--epoch-ms', EPOCH_MS, '--settle-ms', '300', '--worker-timeout-ms', '3000'])
    const aWorkers = ['a-w1', 'a-w2'].map((id) => a.startWorker(id, FIXTURE, ['--state-dir', join(dir, id), '--epoch-ms', EPOCH_MS, '--heartbeat-ms', '250', ...paramArgs(aParams)]))
    const pipelineA = migrationPipeline(aParams)
    // Mid-input: the agg stage has committed some output on A.
    await until(async () => (await pipeA.describeTopic(pipelineA.outputTopic(pipelineA.stage('agg')!))) !== undefined && (await readStageOutput(pipelineA, pipeA, 'agg')).length >= 600, 40_000, 'site A committing output')
    for (const w of aWorkers) w.signal('SIGTERM')
    for (const w of aWorkers) {
      const o = await w.done
      expect(o.code, `${w.name}: ${o.stderr}`).toBe(0)
    }
    const stoppedAt = Date.now()

    // The savepoint from A (its coordinator still running, as in the playbook), checked, restored onto B's Kafka.
    const sp = join(dir, 'sp')
    const created = await weir(['savepoint', 'create', FIXTURE, '--pipe', `kafka://${kafka.url}`, '--target', sp, ...paramArgs(aParams)])
    expect(created.code, created.stderr).toBe(0)
    a.coordinators[0]!.signal('SIGTERM')
    const verified = await weir(['savepoint', 'inspect', sp, '--verify'])
    expect(verified.code, verified.stderr).toBe(0)
    const bParams = { ...base, agg: '3', sessions: '2' }
    const restored = await weir(['savepoint', 'restore', sp, FIXTURE, '--pipe', `kafka://${kafka2.url}`, ...paramArgs(bParams)])
    expect(restored.code, restored.stderr).toBe(0)
    expect(restored.stdout).toMatch(/restored for pipeline/)
    // The playbook's "a restore cut short is run again": a rerun after it finished writes nothing.
    const again = await weir(['savepoint', 'restore', sp, FIXTURE, '--pipe', `kafka://${kafka2.url}`, ...paramArgs(bParams)])
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toContain('was already restored onto this pipe: nothing written')

    // Site B: a coordinator and two workers on the other Kafka and NATS finish the input.
    const b = new TestCluster({ cluster, kafka: `kafka://${kafka2.url}`, nats: nats2.url, logDir: join(dir, 'logs-b') })
    onTestFinished(() => b.killAll())
    onTestFinished((ctx) => {
      if (ctx.task.result?.state === 'fail') console.error(b.logTails(30))
    })
    b.startCoordinator('b-c', ['--epoch-ms', EPOCH_MS, '--settle-ms', '300'])
    const bWorkers = ['b-w1', 'b-w2'].map((id) => b.startWorker(id, FIXTURE, ['--state-dir', join(dir, id), '--epoch-ms', EPOCH_MS, '--heartbeat-ms', '250', ...paramArgs(bParams)]))
    for (const w of bWorkers) {
      const o = await w.done
      expect(o.code, `${w.name}: ${o.stderr}`).toBe(0)
    }
    const finishedAt = Date.now()
    b.coordinators[0]!.signal('SIGTERM')

    const pipeB = await KafkaPipe.connect({ brokers: kafka2.url.split(',') }, log)
    onTestFinished(() => pipeB.close())
    const onA = await outputsOf(pipelineA, pipeA)
    const onB = await outputsOf(migrationPipeline(bParams), pipeB)
    expect(total(onA)).toBeGreaterThan(0)
    expect(total(onB), 'site A was stopped before the end of the input').toBeGreaterThan(0)
    await expectExactlyOnce('site A → site B', ref, onA, onB, migrationPipeline(bParams), pipeB)
    console.log(`migration site A → site B: ${JSON.stringify({ events: 6000, refOutputs: total(ref.outputs), outputsOnA: total(onA), outputsOnB: total(onB), ...(await savepointCoverage(sp)), rescaled: 'agg 2→3', savepointToFinishedMs: finishedAt - stoppedAt, ms: Date.now() - started })}`)
  }, 90_000)

  it('a savepoint of cluster A while it runs (weir savepoint create --bus, the workers writing under --savepoint-dir), restored onto B: A\'s outputs up to the cut plus B\'s exactly once, final state equal', async () => {
    const started = Date.now()
    const dir = tempDir()
    const name = `mig-live-${randomUUID().slice(0, 8)}`
    const cluster = `l${randomUUID().slice(0, 8)}`
    const base = { name, events: '3000', keys: '60' }
    const ref = await reference({ ...base, agg: '3', sessions: '2' }, join(dir, 'ref'))
    const savepoints = join(dir, 'savepoints')

    const aParams = { ...base, agg: '2', sessions: '2', rate: '300' }
    const a = new TestCluster({ cluster, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs-a') })
    onTestFinished(() => a.killAll())
    onTestFinished((ctx) => {
      if (ctx.task.result?.state === 'fail') console.error(a.logTails(30))
    })
    const pipeA = await KafkaPipe.connect({ brokers: kafka.url.split(',') }, log)
    onTestFinished(() => pipeA.close())
    a.startCoordinator('a-c', ['--epoch-ms', EPOCH_MS, '--settle-ms', '300', '--worker-timeout-ms', '3000'])
    const aWorkers = ['a-w1', 'a-w2'].map((id) => a.startWorker(id, FIXTURE, ['--state-dir', join(dir, id), '--savepoint-dir', savepoints, '--epoch-ms', EPOCH_MS, '--heartbeat-ms', '250', ...paramArgs(aParams)]))
    const pipelineA = migrationPipeline(aParams)
    await until(async () => (await pipeA.describeTopic(pipelineA.outputTopic(pipelineA.stage('agg')!))) !== undefined && (await readStageOutput(pipelineA, pipeA, 'agg')).length >= 600, 40_000, 'site A committing output')

    // The savepoint while A runs; A goes on for a while after it, then stops.
    const sp = join(savepoints, 'live-1')
    const created = await weir(['savepoint', 'create', FIXTURE, '--bus', nats.url, '--cluster', cluster, '--target', sp, ...paramArgs(aParams)])
    expect(created.code, created.stderr).toBe(0)
    const heldMs = Number(/inputs held (\d+) ms/.exec(created.stdout)?.[1])
    expect(heldMs, created.stdout).toBeGreaterThanOrEqual(0)
    await sleep(1000)
    for (const w of aWorkers) w.signal('SIGTERM')
    for (const w of aWorkers) {
      const o = await w.done
      expect(o.code, `${w.name}: ${o.stderr}`).toBe(0)
    }
    a.coordinators[0]!.signal('SIGTERM')
    const inspected = JSON.parse((await weir(['savepoint', 'inspect', sp, '--json', '--verify'])).stdout) as { cut: { outputEnds: Record<string, Record<string, number>> } }

    const bParams = { ...base, agg: '3', sessions: '2' }
    const restored = await weir(['savepoint', 'restore', sp, FIXTURE, '--pipe', `kafka://${kafka2.url}`, ...paramArgs(bParams)])
    expect(restored.code, restored.stderr).toBe(0)
    const b = new TestCluster({ cluster, kafka: `kafka://${kafka2.url}`, nats: nats2.url, logDir: join(dir, 'logs-b') })
    onTestFinished(() => b.killAll())
    onTestFinished((ctx) => {
      if (ctx.task.result?.state === 'fail') console.error(b.logTails(30))
    })
    b.startCoordinator('b-c', ['--epoch-ms', EPOCH_MS, '--settle-ms', '300'])
    const bWorkers = ['b-w1', 'b-w2'].map((id) => b.startWorker(id, FIXTURE, ['--state-dir', join(dir, id), '--epoch-ms', EPOCH_MS, '--heartbeat-ms', '250', ...paramArgs(bParams)]))
    for (const w of bWorkers) {
      const o = await w.done
      expect(o.code, `${w.name}: ${o.stderr}`).toBe(0)
    }
    b.coordinators[0]!.signal('SIGTERM')

    const pipeB = await KafkaPipe.connect({ brokers: kafka2.url.split(',') }, log)
    onTestFinished(() => pipeB.close())
    // A ran on after the cut: only what it had written by then counts (B writes the rest again).
    const onA = {} as Outputs
    let afterCutOnA = 0
    for (const stage of OUTPUT_STAGES) {
      const ends = inspected.cut.outputEnds[pipelineA.outputTopic(pipelineA.stage(stage)!)]!
      const all = await readStageOutput(pipelineA, pipeA, stage)
      onA[stage] = all.filter((r) => r.offset < ends[String(r.partition)]!).map((r) => r.value)
      afterCutOnA += all.length - onA[stage].length
    }
    const onB = await outputsOf(migrationPipeline(bParams), pipeB)
    expect(total(onA)).toBeGreaterThan(0)
    expect(total(onB)).toBeGreaterThan(0)
    await expectExactlyOnce('live site A → site B', ref, onA, onB, migrationPipeline(bParams), pipeB)
    console.log(`live savepoint site A → site B: ${JSON.stringify({ events: 6000, refOutputs: total(ref.outputs), outputsOnAUpToCut: total(onA), outputsOnAAfterCut: afterCutOnA, outputsOnB: total(onB), heldMs, ...(await savepointCoverage(sp)), ms: Date.now() - started })}`)
  }, 90_000)
})
