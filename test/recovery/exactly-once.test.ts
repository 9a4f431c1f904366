/**
 * The exactly-once property: for random inputs (1-3 source partitions of 0-2,000 lines,
 * skewed small and large: most cases span many epochs and micro-batches) and random crash
 * schedules (in-process crashes at protocol points, or real SIGKILLs of child processes at
 * protocol points and from outside), the restarted pipeline's sink files, dead letters and
 * final state equal a crash-free reference in what exactly-once promises
 * (fixtures/observe.ts): nothing lost, nothing doubled. Crashes land anywhere from the
 * start to the tail of a run and every planned crash must fire (fixtures/crash-plan.ts);
 * edge topics are purged as consumed (the default). The run prints how many cases crashed,
 * how long they were and how much was purged.
 *
 * WEIR_PROPERTY_RUNS sets the number of cases (default 20); WEIR_PROPERTY_SEED replays one.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import {
  purgedRecords,
  removeDir,
  runFileToCompletion,
  runToCompletion,
  tempDataDir,
} from '../../testing/index.ts'
import { inProcess, measureRun, plannedCrashes, translate, type PlannedCrash } from './fixtures/crash-plan.ts'
import { expectSame, observe } from './fixtures/observe.ts'
import { inputSize, recoveryInputs, recoveryPipeline } from './fixtures/recovery-pipeline.ts'
import { chainsOf } from '../../runtime/api/chains.ts'
import { epochsOf, formatStats, type CaseStats } from './fixtures/stats.ts'

const RUNS = Number(process.env.WEIR_PROPERTY_RUNS ?? 20)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'recovery-pipeline.ts')
const dirs: string[] = []
/** Changelogs are compacted all the time, so recovery replays compacted logs. */
const COMPACT_OFTEN = { compactionMinDirtyRecords: 4, compactionMinIntervalMs: 0 }
const EPOCH_MS = 20
/** Small batches: a case spans many micro-batches, and a crash mid-batch leaves part of one done. */
const ACTOR_CONFIG = { maxBatch: 64 }

const input = recoveryInputs(2000)

type Mode = { kind: 'in-process'; plans: PlannedCrash[] } | { kind: 'sigkill'; plans: PlannedCrash[] }

const mode: fc.Arbitrary<Mode> = fc.oneof(
  { weight: 4, arbitrary: plannedCrashes('in-process', 3).map((plans): Mode => ({ kind: 'in-process', plans })) },
  { weight: 1, arbitrary: plannedCrashes('process', 2).map((plans): Mode => ({ kind: 'sigkill', plans })) },
)

/** One SIGKILL case is always run (first): with 20 cases at 1 in 5, a run may otherwise have none. */
const SIGKILL_CASE = fc.sample(
  fc.tuple(input.filter((i) => inputSize(i).lines >= 500), plannedCrashes('process', 2).map((plans): Mode => ({ kind: 'sigkill', plans }))),
  { seed: 7, numRuns: 1 },
)[0]!

describe('exactly-once recovery', () => {
  it('runs split chained to its source (no topic between lines and split)', () => {
    const plan = chainsOf(recoveryPipeline({ partitions: [[]] }, 'unused'))
    console.log(`chained edges of the recovery pipeline: ${[...plan.upstreamOf].map(([down, up]) => `${up} → ${down}`).join(', ')}`)
    expect(plan.upstreamOf.get('split')).toBe('lines')
  })

  it(`outputs and state after crashes equal the crash-free reference (${RUNS} generated cases)`, async () => {
    const cases: CaseStats[] = []
    const started = Date.now()
    try {
      await fc.assert(
        fc.asyncProperty(input, mode, async (inp, m) => {
          const refDir = tempDataDir('weir-ref-')
          const runDir = tempDataDir('weir-crash-')
          dirs.push(refDir, runDir)
          const reference = recoveryPipeline(inp, join(refDir, 'out'))
          const refStart = Date.now()
          const ref = await runToCompletion(reference, { dataDir: join(refDir, 'data'), epochIntervalMs: EPOCH_MS, actorConfig: ACTOR_CONFIG, pipeOptions: COMPACT_OFTEN })
          const referenceMs = Date.now() - refStart
          const expected = await observe(inp, 'recovery', join(refDir, 'data'), join(refDir, 'out'))
          const pipeline = recoveryPipeline(inp, join(runDir, 'out'))
          const dataDir = join(runDir, 'data')
          const outDir = join(runDir, 'out')
          const moved: string[] = []
          const places: number[] = []
          const planner = (plan: PlannedCrash) => async () => {
            const t = translate(plan, await measureRun(pipeline, inp, dataDir, outDir, ACTOR_CONFIG.maxBatch, plan))
            if (t.moved) moved.push(plan.point)
            if (t.place !== undefined) places.push(t.place)
            return t.crash
          }
          const crashStart = Date.now()
          let planned: unknown[]
          let crashed: unknown[]
          if (m.kind === 'in-process') {
            const r = await runToCompletion(pipeline, { dataDir, crashes: m.plans.map((plan) => async () => inProcess(await planner(plan)())), epochIntervalMs: EPOCH_MS, actorConfig: ACTOR_CONFIG, pipeOptions: COMPACT_OFTEN })
            planned = r.planned
            crashed = r.crashed
          } else {
            const inputFile = join(runDir, 'input.json')
            writeFileSync(inputFile, JSON.stringify(inp))
            const r = await runFileToCompletion(FIXTURE, { dataDir, params: { input: inputFile, out: outDir }, crashes: m.plans.map(planner), epochIntervalMs: EPOCH_MS, env: { WEIR_COMPACTION_MIN_DIRTY: String(COMPACT_OFTEN.compactionMinDirtyRecords), WEIR_MAX_BATCH: String(ACTOR_CONFIG.maxBatch) } })
            planned = r.planned
            crashed = r.crashed
          }
          const crashedMs = Date.now() - crashStart
          const label = `${m.kind} ${JSON.stringify(m.plans)} → ${JSON.stringify(planned)}`
          expect(crashed, `${label}: every planned crash must fire`).toEqual(planned)
          const actual = await observe(inp, 'recovery', dataDir, outDir)
          expectSame(expected, actual, label)
          const size = inputSize(inp)
          cases.push({ kind: m.kind, planned: planned.length, crashed: crashed.length, moved, places, epochs: epochsOf(ref.result), batches: ref.finalRunHits['mid-batch'], lines: size.lines, words: size.words, purged: await purgedRecords(pipeline, dataDir), referenceMs, crashedMs })
          removeDir(refDir)
          removeDir(runDir)
        }),
        { numRuns: RUNS, seed: SEED, verbose: 1, endOnFailure: true, examples: [SIGKILL_CASE] },
      )
    } finally {
      console.log(formatStats('exactly-once recovery (embedded pipe)', cases, Date.now() - started))
    }
    expect(cases.filter((c) => c.kind === 'sigkill' && c.crashed > 0).length, 'some cases must SIGKILL real processes').toBeGreaterThan(0)
    expect(cases.filter((c) => c.purged > 0).length, 'purging must delete consumed edge records in some cases').toBeGreaterThan(0)
  }, Math.max(600_000, RUNS * 30_000))
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
