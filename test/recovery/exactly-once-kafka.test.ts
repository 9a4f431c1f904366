/**
 * The exactly-once property on Kafka: random inputs (fixtures/recovery-pipeline.ts: 1-3
 * partitions of 0 to MAX_LINES lines, skewed small and large), real SIGKILLs of child
 * processes (at protocol points placed anywhere in the run via WEIR_CRASH_AT, or from
 * outside while a paced source still emits; fixtures/crash-plan.ts), restarts on the same
 * Kafka topics and data dir, with consumed edge records purged (the default: Kafka's
 * DeleteRecords). The sink files, the dead letters (read read_committed) and the final
 * state equal a crash-free reference run on the embedded pipe: the same pipeline gives the
 * same results on both pipes, and nothing is lost or doubled on Kafka. Every planned crash
 * must fire, and purging must have deleted edge records in some cases.
 *
 * The count stage's topic is purged as the sink consumes it, so it is not read back; the
 * sink's files hold the same [word, count] records (per word the counts 1..N), and the
 * count stage's state is compared too.
 *
 * WEIR_KAFKA_PROPERTY_RUNS sets the number of cases (default 6); WEIR_PROPERTY_SEED replays one.
 */
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import { purgedRecords, removeDir, runFileToCompletion, runToCompletion, tempDataDir } from '../../testing/index.ts'
import { requireService } from '../support/services.ts'
import { measureRun, plannedCrashes, translate, type PlannedCrash } from './fixtures/crash-plan.ts'
import { expectSame, observe } from './fixtures/observe.ts'
import { inputSize, recoveryInputs, recoveryPipeline } from './fixtures/recovery-pipeline.ts'
import { chainsOf } from '../../runtime/api/chains.ts'
import { epochsOf, formatStats, type CaseStats } from './fixtures/stats.ts'

const kafka = await requireService('kafka')
const RUNS = Number(process.env.WEIR_KAFKA_PROPERTY_RUNS ?? 6)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'recovery-pipeline.ts')
const run = randomUUID().slice(0, 6)
const dirs: string[] = []
const MAX_LINES = 2000
const EPOCH_MS = 100
const MAX_BATCH = 64

const input = recoveryInputs(MAX_LINES)
const crashes = plannedCrashes('process', 2)

describe.skipIf(!kafka.available)('exactly-once recovery on Kafka', () => {
  it('runs split chained to its source (no topic between lines and split)', () => {
    const plan = chainsOf(recoveryPipeline({ partitions: [[]] }, 'unused'))
    console.log(`chained edges of the recovery pipeline: ${[...plan.upstreamOf].map(([down, up]) => `${up} → ${down}`).join(', ')}`)
    expect(plan.upstreamOf.get('split')).toBe('lines')
  })

  it(`outputs and state after SIGKILLs on Kafka, with consumed records purged, equal the crash-free reference (${RUNS} generated cases)`, async () => {
    const pipe = await KafkaPipe.connect({ brokers: kafka.url.split(',') })
    let caseNo = 0
    const cases: CaseStats[] = []
    const started = Date.now()
    try {
      await fc.assert(
        fc.asyncProperty(input, crashes, async (inp, plans) => {
          const name = `rec-${run}-${caseNo++}`
          const refDir = tempDataDir('weir-ref-')
          const runDir = tempDataDir('weir-kafka-crash-')
          dirs.push(refDir, runDir)
          const refStart = Date.now()
          const ref = await runToCompletion(recoveryPipeline(inp, join(refDir, 'out'), name), { dataDir: join(refDir, 'data'), epochIntervalMs: EPOCH_MS, actorConfig: { maxBatch: MAX_BATCH } })
          const referenceMs = Date.now() - refStart
          const expected = await observe(inp, name, join(refDir, 'data'), join(refDir, 'out'))

          const pipeline = recoveryPipeline(inp, join(runDir, 'out'), name)
          const dataDir = join(runDir, 'data')
          const outDir = join(runDir, 'out')
          const inputFile = join(runDir, 'input.json')
          writeFileSync(inputFile, JSON.stringify(inp))
          const moved: string[] = []
          const places: number[] = []
          const crashStart = Date.now()
          const r = await runFileToCompletion(FIXTURE, {
            dataDir,
            params: { input: inputFile, out: outDir, name },
            crashes: plans.map((plan: PlannedCrash) => async () => {
              const t = translate(plan, await measureRun(pipeline, inp, dataDir, outDir, MAX_BATCH, plan, pipe))
              if (t.moved) moved.push(plan.point)
              if (t.place !== undefined) places.push(t.place)
              return t.crash
            }),
            epochIntervalMs: EPOCH_MS,
            timeoutMs: 120_000,
            env: { WEIR_PIPE: `kafka://${kafka.url}`, WEIR_MAX_BATCH: String(MAX_BATCH) },
          })
          const crashedMs = Date.now() - crashStart
          const label = `${name} ${JSON.stringify(plans)} → ${JSON.stringify(r.planned)}`
          expect(r.crashed, `${label}: every planned crash must fire`).toEqual(r.planned)
          const actual = await observe(inp, name, dataDir, outDir, pipe)
          expectSame(expected, actual, label)
          const size = inputSize(inp)
          cases.push({ kind: 'sigkill', planned: r.planned.length, crashed: r.crashed.length, moved, places, epochs: epochsOf(ref.result), batches: ref.finalRunHits['mid-batch'], lines: size.lines, words: size.words, purged: await purgedRecords(pipeline, pipe), referenceMs, crashedMs })
          removeDir(refDir)
          removeDir(runDir)
        }),
        { numRuns: RUNS, seed: SEED, verbose: 1, endOnFailure: true },
      )
    } finally {
      console.log(formatStats('exactly-once recovery on Kafka', cases, Date.now() - started, 'reference on the embedded pipe'))
      for (const t of (await pipe.listTopics()).filter((t) => t.startsWith(`weir.rec-${run}-`))) await pipe.deleteTopic(t).catch(() => undefined)
      await pipe.close()
    }
    expect(cases.filter((c) => c.purged > 0).length, 'purging must delete consumed edge records on Kafka in some cases').toBeGreaterThan(0)
  }, Math.max(600_000, RUNS * 120_000))
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
