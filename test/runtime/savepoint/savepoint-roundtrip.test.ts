/**
 * The savepoint round trip, as a property: a generated input is cut at a generated point;
 * the run up to the cut is stopped wherever it is, or crashed as a kill would (records still
 * in flight between stages either way),
 * a savepoint is taken, and a pipeline with other actor counts for its keyed stages is
 * restored from it into a new data dir (a new pipe) and runs the rest of the input. The
 * outputs of both runs together, and the final state, equal those of one uninterrupted run.
 *
 * WEIR_SAVEPOINT_PROPERTY_RUNS sets the number of cases (default 8); WEIR_PROPERTY_SEED replays one.
 */
import { afterAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import pino from 'pino'
import { createSavepoint, SimulatedCrash, multisetDiff, readCommittedState, readStageOutput, removeTempDirs, runToCompletion, tempDataDir } from '../../../testing/index.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
import { Faults } from '../../../runtime/faults.ts'
import { readManifest } from '../../../runtime/savepoint/manifest.ts'
import { roundTripInputs, roundTripPipeline, type RoundTripInput } from './fixtures/roundtrip-pipeline.ts'

const RUNS = Number(process.env.WEIR_SAVEPOINT_PROPERTY_RUNS ?? 8)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const log = pino({ level: 'silent' })

afterAll(() => removeTempDirs())

const outputs = async (pipeline: ReturnType<typeof roundTripPipeline>, dir: string): Promise<{ agg: unknown[]; sessions: unknown[] }> => ({
  agg: (await readStageOutput(pipeline, dir, 'agg')).map((r) => r.value),
  sessions: (await readStageOutput(pipeline, dir, 'sessions')).map((r) => r.value),
})

/**
 * Runs the pipeline held at `limit` events per partition until the source emitted them, then
 * stops it without waiting for the rest; or, with `crashAfter`, crashes it (as a kill would:
 * no final checkpoint) at the first checkpoint after agg processed that many records, which
 * leaves the records agg had not committed in flight for the savepoint's drain.
 */
async function runToCut(input: RoundTripInput, options: Parameters<typeof roundTripPipeline>[1], dataDir: string, crashAfter: number | undefined): Promise<'stopped' | 'crashed'> {
  const pipeline = roundTripPipeline(input, options)
  const faults = crashAfter === undefined ? Faults.none() : new Faults({ point: 'before-commit', hit: 1, afterRecords: { stage: 'agg', records: crashAfter } }, 'throw')
  const run = await startEmbedded(pipeline, { dataDir, epochIntervalMs: 30, log, faults })
  let crashed = false
  void run.done.catch((err: unknown) => {
    if (!(err instanceof SimulatedCrash)) throw err
    crashed = true
  })
  const want = input.partitions.reduce((n, p) => n + Math.min(p.length, options.limit ?? p.length), 0)
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline && !crashed) {
    const emitted = Object.entries(run.stats()).filter(([id]) => id.startsWith('events/')).reduce((n, [, s]) => n + s.recordsOut, 0)
    if (emitted >= want && crashAfter === undefined) break
    await new Promise((r) => setTimeout(r, 20))
  }
  if (crashed) return 'crashed'
  await run.stop()
  return 'stopped'
}

describe('savepoint round trip', () => {
  it(`cut anywhere, restored at other parallelisms onto a new pipe: outputs and final state equal an uninterrupted run's (${RUNS} generated cases)`, async () => {
    const covered = { cases: 0, events: 0, keys: 0, timers: 0, rescaled: 0, drainRounds: 0, crashed: 0, crashedWithRecordsInFlight: 0, drainedRecords: 0, casesWithRecordsInFlight: 0, ms: 0 }
    const started = Date.now()
    await fc.assert(
      fc.asyncProperty(
        roundTripInputs(400),
        fc.integer({ min: 0, max: 1000 }).map((n) => n / 1000),
        fc.constantFrom(1, 2, 3), fc.constantFrom(1, 2, 4), fc.constantFrom(1, 3), fc.constantFrom(2, 3),
        fc.integer({ min: 30, max: 300 }),
        fc.option(fc.integer({ min: 0, max: 1000 }).map((n) => n / 1000), { nil: undefined, freq: 2 }),
        async (input, cutAt, aggBefore, aggAfter, winBefore, winAfter, gapMs, crashAt) => {
          const name = 'roundtrip'
          const longest = Math.max(...input.partitions.map((p) => p.length))
          const limit = Math.floor(cutAt * longest)
          // The reference: one uninterrupted run at the new parallelism.
          const refDir = tempDataDir()
          const reference = roundTripPipeline(input, { name, aggActors: aggAfter, windowActors: winAfter, gapMs })
          await runToCompletion(reference, { dataDir: refDir, epochIntervalMs: 30, log })

          const before = { name, limit, aggActors: aggBefore, windowActors: winBefore, gapMs }
          const firstDir = tempDataDir()
          const cutEvents = input.partitions.reduce((n, p) => n + Math.min(p.length, limit), 0)
          // A crash needs records after it to cross a checkpoint: at least one, short of the cut.
          const crashAfter = crashAt === undefined || cutEvents < 2 ? undefined : 1 + Math.floor(crashAt * (cutEvents - 1))
          const cut = await runToCut(input, before, firstDir, crashAfter)
          if (cut === 'crashed') covered.crashed++
          const crashedCut = cut === 'crashed'
          const sp = `${tempDataDir()}/sp`
          const manifest = await createSavepoint(roundTripPipeline(input, before), { dataDir: firstDir, target: sp, log })
          expect(readManifest(sp).id).toBe(manifest.id)
          // A crash usually leaves what agg had not committed in flight, for the drain to process.
          // Not always: the planned crash is the first before-commit of any actor once agg took
          // its records, and agg's own commit may land first (counted below, over all cases).
          if (crashedCut && manifest.drain.records > 0) covered.crashedWithRecordsInFlight++

          const secondDir = tempDataDir()
          const after = roundTripPipeline(input, { name, aggActors: aggAfter, windowActors: winAfter, gapMs })
          await runToCompletion(after, { dataDir: secondDir, epochIntervalMs: 30, log, fromSavepoint: { dir: sp } })

          const expected = await outputs(reference, refDir)
          const firstOut = await outputs(roundTripPipeline(input, before), firstDir)
          const secondOut = await outputs(after, secondDir)
          const label = `cut at ${limit} of ${longest} (${cut}${crashAfter === undefined ? '' : ` after ${crashAfter} agg records`}), agg ${aggBefore}→${aggAfter}, sessions ${winBefore}→${winAfter}, gap ${gapMs}`
          for (const stage of ['agg', 'sessions'] as const) {
            const diff = multisetDiff(expected[stage], [...firstOut[stage], ...secondOut[stage]])
            expect(diff, `${label}: ${stage} outputs`).toEqual({ missing: [], extra: [] })
          }
          for (const stage of ['events', 'agg', 'sessions']) {
            const want = await readCommittedState(reference, refDir, stage)
            const got = await readCommittedState(after, secondDir, stage)
            expect(got.keyed, `${label}: ${stage} keyed state`).toEqual(want.keyed)
          }
          covered.cases++
          covered.events += input.partitions.reduce((n, p) => n + p.length, 0)
          covered.keys += Object.values(manifest.stages).reduce((n, s) => n + s.actors.reduce((m, a) => m + Object.values(a.keys).reduce((x, y) => x + y, 0), 0), 0)
          covered.timers += Object.values(manifest.stages).reduce((n, s) => n + s.actors.reduce((m, a) => m + a.timers, 0), 0)
          if (aggBefore !== aggAfter || winBefore !== winAfter) covered.rescaled++
          covered.drainRounds += manifest.drain.rounds
          covered.drainedRecords += manifest.drain.records
          if (manifest.drain.records > 0) covered.casesWithRecordsInFlight++
        },
      ),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    )
    covered.ms = Date.now() - started
    console.log(`savepoint round trip: ${JSON.stringify(covered)}`)
    expect(covered.cases).toBe(RUNS)
    expect(covered.keys, 'the savepoints held keyed state').toBeGreaterThan(0)
    expect(covered.timers, 'the savepoints held open windows (timers)').toBeGreaterThan(0)
    if (covered.crashed >= 2) expect(covered.crashedWithRecordsInFlight, 'crashed cases that left records in flight for the drain').toBeGreaterThan(0)
  }, Math.max(120_000, RUNS * 20_000))
})
