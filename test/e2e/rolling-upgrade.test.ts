/**
 * A rolling upgrade under load, on real processes: `weir coordinator` and three
 * `weir worker`s (each its own --state-dir) on Kafka and NATS run a keyed count
 * (fixtures/rolling-v1.ts). Its source emits a burst (the state to keep) and then a paced
 * stream that runs through the whole upgrade. Each worker in turn gets SIGTERM (it hands
 * its actors off), exits, and starts again with the same --id and --state-dir but version
 * 2 of the pipeline file (fixtures/rolling-v2.ts: same topology fingerprint, new processor
 * code whose outputs say `version: 2`), and the test waits for it to take actors back.
 *
 * Checked at the end, from the count stage's output topic read back read_committed: every
 * key's counts are 1, 2, … n with no gap and no repeat, n being what a crash-free count of
 * the generated input gives (nothing lost, nothing doubled); the outputs after the last
 * restart are version 2; and a restarted worker restored the actors it got back from its
 * own RocksDB, replaying only the changelog tail (the 'actor restored' log line's
 * `replayed`, against the changelog partition's size). One JSON line has the figures.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { unpack } from 'msgpackr'
import { describe, expect, it, onTestFinished } from 'vitest'
import { subjects } from '../../runtime/control/bus.ts'
import { assignmentMessage, type AssignmentMessage } from '../../runtime/control/messages.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { createLogger } from '../../runtime/log.ts'
import { naming } from '../../runtime/naming.ts'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import { readRange } from '../../runtime/pipe/read-range.ts'
import { isControlRecord } from '../../runtime/watermarks.ts'
import { TestCluster, type WeirProcess } from '../support/cluster.ts'
import { requireService } from '../support/services.ts'
import { tempDirs, until } from '../support/weir-cli.ts'
import v1 from './fixtures/rolling-v1.ts'
import v2 from './fixtures/rolling-v2.ts'
import { keyOf, rollingParams } from './fixtures/rolling-pipeline.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-rolling-')

const V1 = 'test/e2e/fixtures/rolling-v1.ts'
const V2 = 'test/e2e/fixtures/rolling-v2.ts'
const EPOCH_MS = 300
/** Burst per source partition: ~20k records over 8k keys, so each count partition's changelog holds thousands of records before the upgrade. */
const BURST = 10_000
const KEYS = 8000
/** Paced records per source partition and their rate: ~20 s of load; the upgrade starts ~6 s in and takes ~6 s here. */
const RATE = 50
const PACED = 1000
const WORKERS = ['a', 'b', 'c'] as const

/** What a worker logged when an actor finished restoring (runtime/worker.ts, info level). */
interface Restore {
  worker: string
  actor: string
  /** When it ended, ms since the epoch. */
  at: number
  /** Changelog records applied to the local store: 0 for a store that was current, the whole changelog for a new one. */
  replayed: number
  ms: number
}

/** The restores in a log; `own` keeps only those of the process that started last (a restarted worker appends to its predecessor's file). */
function restoresIn(p: WeirProcess, own = true): Restore[] {
  const out: Restore[] = []
  const text = readFileSync(p.logFile, 'utf8')
  for (const line of (own ? text.slice(Math.max(0, text.lastIndexOf(' weir worker '))) : text).split('\n')) {
    if (!line.includes('"actor restored: starting from its last checkpoint"')) continue
    const e = JSON.parse(line) as { worker: string; actor: string; time: number; replayed: number; restoreMs: number }
    out.push({ worker: e.worker, actor: e.actor, at: e.time, replayed: e.replayed, ms: e.restoreMs })
  }
  return out
}

describe.skipIf(!kafka.available || !nats.available)('a rolling upgrade of a cluster\'s workers', () => {
  it('three workers replaced one at a time under load with new processor code: outputs exact, later outputs from v2, restarted workers replay only their changelog tail', async () => {
    const dir = tempDir()
    const cluster = `r${randomUUID().slice(0, 8)}`
    const name = `rolling-${randomUUID().slice(0, 8)}`
    const params = { name, burst: String(BURST), paced: String(PACED), rate: String(RATE), keys: String(KEYS), standbys: process.env.ROLLING_STANDBYS ?? '0' }
    const paramArgs = Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`])
    // Info: each restore's line with its replayed count.
    const c = new TestCluster({ cluster, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs'), logLevel: 'info' })
    onTestFinished(() => c.killAll())
    onTestFinished((ctx) => {
      if (ctx.task.result?.state === 'fail') console.error(c.logTails(40))
    })
    const t0 = Date.now()
    expect(v2(params).fingerprint(), 'v1 and v2 have one topology').toBe(v1(params).fingerprint())

    const bus = await NatsBus.connect({ servers: [nats.url], name: 'rolling-test', log: createLogger('warn') })
    onTestFinished(() => bus.close())
    const assignments: AssignmentMessage[] = []
    bus.subscribe(subjects.assignment(cluster, name), (m) => {
      const a = assignmentMessage.safeParse(m)
      if (a.success) assignments.push(a.data)
    })
    const last = (): AssignmentMessage | undefined => assignments.at(-1)
    const actorsOf = (a: AssignmentMessage | undefined, w: string): string[] => Object.entries(a?.actors ?? {}).filter(([, x]) => x === w).map(([id]) => id).sort()

    c.startCoordinator('c1', ['--epoch-ms', String(EPOCH_MS), '--worker-timeout-ms', '3000', '--settle-ms', '1000'])
    const workerArgs = (id: string): string[] => ['--state-dir', join(dir, id), '--epoch-ms', String(EPOCH_MS), '--heartbeat-ms', '250', ...paramArgs]
    const current = new Map<string, WeirProcess>(WORKERS.map((id) => [id, c.startWorker(id, V1, workerArgs(id))]))
    await until(() => new Set(Object.values(last()?.actors ?? {})).size === 3, 30_000, 'all three workers placed')

    const pipeline = v1(params)
    const countStage = pipeline.stage('count')!
    const pipe = await KafkaPipe.connect({ brokers: kafka.url.split(',') }, createLogger('warn'))
    onTestFinished(() => pipe.close())
    const changelog = naming.changelog(name, 'count')
    const changelogSize = async (): Promise<number[]> => Promise.all(Array.from({ length: countStage.parallelism }, (_, p) => pipe.endOffset(changelog, p)))
    // The burst is counted and in the changelog before the upgrade starts: the state to keep.
    await until(async () => (await changelogSize()).reduce((s, n) => s + n, 0) >= KEYS * 0.9 ? true : undefined, 40_000, 'the burst counted into the changelog')
    const upgradeStart = Date.now()

    interface Step { worker: string; before: string[]; after: string[]; termAt: number; handoffMs: number; exitCode: number | null; restartToActorsMs: number; restores: Restore[] }
    const steps: Step[] = []
    for (const id of WORKERS) {
      const old = current.get(id)!
      const before = actorsOf(last(), id)
      const termAt = Date.now()
      old.signal('SIGTERM')
      const exit = await old.done
      const handoffMs = Date.now() - termAt
      // Its actors are placed elsewhere and released by it: nothing waits on the worker that left.
      await until(() => {
        const a = last()
        return a !== undefined && actorsOf(a, id).length === 0 && Object.keys(a.releasing ?? {}).length === 0 && Object.keys(a.actors).length === pipeline.actorStages.reduce((n, s) => n + s.parallelism, 0) ? true : undefined
      }, 20_000, `${id}'s actors re-placed`)
      const restartAt = Date.now()
      const next = c.startWorker(`${id}`, V2, workerArgs(id))
      current.set(id, next)
      // Back: it holds actors again and has restored every one of them.
      const after = await until(() => {
        const mine = actorsOf(last(), id)
        if (mine.length === 0 || Object.keys(last()?.releasing ?? {}).length > 0) return undefined
        const restored = new Set(restoresIn(next).map((r) => r.actor))
        return mine.every((a) => restored.has(a)) ? mine : undefined
      }, 30_000, `${id} (v2) taking actors back`)
      steps.push({ worker: id, before, after, termAt, handoffMs, exitCode: exit.code, restartToActorsMs: Date.now() - restartAt, restores: restoresIn(next) })
    }
    const upgradedAt = Date.now()
    const upgradeMs = upgradedAt - upgradeStart

    // The paced input ends; each worker exits once every actor finished.
    const outcomes = await Promise.all(WORKERS.map((id) => current.get(id)!.done))
    const totalChangelog = await changelogSize()

    // The count stage's output, read back read_committed, partition by partition.
    const topic = pipeline.outputTopic(countStage)
    const counts = new Map<string, number[]>()
    let v2After = 0
    let v1After = 0
    let v2Outputs = 0
    let outputs = 0
    for (let p = 0; p < countStage.parallelism; p++) {
      await readRange(pipe, topic, p, await pipe.startOffset(topic, p), await pipe.endOffset(topic, p), (batch) => {
        for (const r of batch) {
          if (isControlRecord(r) || r.key === null) continue
          const v = unpack(r.value!) as { count: number; version?: number; key?: string }
          const key = r.key.toString()
          outputs++
          if (v.version === 2) {
            v2Outputs++
            if (v.key !== key) throw new Error(`v2 output of ${key} names key ${v.key}`)
          }
          // Emitted after the last worker took its actors back: every actor runs v2 by then.
          if (r.timestamp > upgradedAt) {
            if (v.version === 2) v2After++
            else v1After++
          }
          const list = counts.get(key) ?? []
          list.push(v.count)
          counts.set(key, list)
        }
      })
    }

    // A crash-free count of the generated input.
    const p = rollingParams(params)
    const expected = new Map<string, number>()
    for (let part = 0; part < 2; part++) for (let i = 0; i < p.burst + p.paced; i++) expected.set(keyOf(i, part, p.keys), (expected.get(keyOf(i, part, p.keys)) ?? 0) + 1)
    const wrong: string[] = []
    for (const [key, n] of expected) {
      const got = counts.get(key) ?? []
      if (got.length !== n || got.some((x, i) => x !== i + 1)) wrong.push(`${key}: expected 1..${n}, got [${got.slice(0, 12).join(',')}${got.length > 12 ? `,… (${got.length})` : ''}]`)
    }
    for (const key of counts.keys()) if (!expected.has(key)) wrong.push(`${key}: output for a key never generated`)

    // Restores of count actors by restarted workers: the tail only, and an actor it held before from its own store.
    const countRestores = steps.flatMap((s) => s.restores.filter((r) => r.actor.startsWith('count/')).map((r) => ({ ...r, worker: s.worker, heldBefore: s.before.includes(r.actor), changelog: totalChangelog[Number(r.actor.split('/')[1])]! })))
    // While a worker is away, its actors run on the others, which have no store of them (no standbys here): those replay in full.
    const everyRestore = WORKERS.flatMap((id) => restoresIn(current.get(id)!, false))
    const interim = steps.flatMap((s, i) => everyRestore.filter((r) => r.worker !== s.worker && s.before.includes(r.actor) && r.at >= s.termAt && r.at < (steps[i + 1]?.termAt ?? upgradedAt)))
    const figures = {
      test: 'rolling-upgrade',
      startMs: upgradeStart - t0,
      records: 2 * (p.burst + p.paced),
      keys: expected.size,
      outputs,
      v2Outputs,
      outputsAfterUpgrade: { v2: v2After, v1: v1After },
      changelogRecords: totalChangelog,
      upgradeMs,
      steps: steps.map((s) => ({ worker: s.worker, before: s.before, after: s.after, handoffMs: s.handoffMs, restartToActorsMs: s.restartToActorsMs, restores: s.restores.map((r) => `${r.actor}:${r.replayed}`) })),
      countRestores: countRestores.map((r) => ({ worker: r.worker, actor: r.actor, heldBefore: r.heldBefore, replayed: r.replayed, changelog: r.changelog, ms: r.ms })),
      interimRestores: interim.map((r) => ({ worker: r.worker, actor: r.actor, replayed: r.replayed, ms: r.ms })),
      wrong: wrong.length,
      totalMs: Date.now() - t0,
    }
    console.log(JSON.stringify(figures))

    expect(wrong.slice(0, 20)).toEqual([])
    expect(outputs).toBe(figures.records)
    expect(steps.map((s) => s.exitCode), 'each worker exits cleanly on SIGTERM').toEqual([0, 0, 0])
    expect(outcomes.map((o) => o.code), 'the v2 workers finish the input and exit cleanly').toEqual([0, 0, 0])
    // The load ran through the upgrade, and what came after it is v2's.
    expect(v2After).toBeGreaterThan(0)
    expect(v1After).toBe(0)
    // A restarted worker gets back the actors whose state it kept, and replays only their tail.
    for (const s of steps) expect(s.after, `${s.worker} gets back the actors it held before`).toEqual(s.before)
    const kept = countRestores.filter((r) => r.heldBefore)
    expect(kept.length).toBeGreaterThanOrEqual(countStage.parallelism)
    for (const r of kept) expect(r.replayed, `${r.worker} ${r.actor} replayed ${r.replayed} of ${r.changelog} changelog records`).toBeLessThan(r.changelog / 5)
  }, 120_000)
})
