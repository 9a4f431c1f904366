/**
 * The savepoint round trip, as a property: a generated input is cut at a generated point;
 * the run up to the cut is stopped wherever it is (records still in flight between stages),
 * a savepoint is taken, and a pipeline with other actor counts for its keyed stages is
 * restored from it into a new data dir (a new pipe) and runs the rest of the input. The
 * outputs of both runs together, and the final state, equal those of one uninterrupted run.
 *
 * WEIR_SAVEPOINT_PROPERTY_RUNS sets the number of cases (default 8); WEIR_PROPERTY_SEED replays one.
 */
import { afterAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import pino from 'pino'
import { createSavepoint, multisetDiff, readCommittedState, readStageOutput, removeTempDirs, runToCompletion, tempDataDir } from '../../../testing/index.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
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

/** Runs the pipeline held at `limit` events per partition until the source emitted them, then stops it without waiting for the rest. */
async function runToCut(input: RoundTripInput, options: Parameters<typeof roundTripPipeline>[1], dataDir: string): Promise<void> {
  const pipeline = roundTripPipeline(input, options)
  const run = await startEmbedded(pipeline, { dataDir, epochIntervalMs: 30, log })
  const want = input.partitions.reduce((n, p) => n + Math.min(p.length, options.limit ?? p.length), 0)
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const emitted = Object.entries(run.stats()).filter(([id]) => id.startsWith('events/')).reduce((n, [, s]) => n + s.recordsOut, 0)
    if (emitted >= want) break
    await new Promise((r) => setTimeout(r, 20))
  }
  await run.stop()
}

describe('savepoint round trip', () => {
  it(`cut anywhere, restored at other parallelisms onto a new pipe: outputs and final state equal an uninterrupted run's (${RUNS} generated cases)`, async () => {
    const covered = { cases: 0, events: 0, keys: 0, timers: 0, rescaled: 0, drainRounds: 0, drainedRecords: 0, casesWithRecordsInFlight: 0, ms: 0 }
    const started = Date.now()
    await fc.assert(
      fc.asyncProperty(
        roundTripInputs(400),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.constantFrom(1, 2, 3), fc.constantFrom(1, 2, 4), fc.constantFrom(1, 3), fc.constantFrom(2, 3),
        fc.integer({ min: 30, max: 300 }),
        async (input, cutAt, aggBefore, aggAfter, winBefore, winAfter, gapMs) => {
          const name = 'roundtrip'
          const longest = Math.max(...input.partitions.map((p) => p.length))
          const limit = Math.floor(cutAt * longest)
          // The reference: one uninterrupted run at the new parallelism.
          const refDir = tempDataDir()
          const reference = roundTripPipeline(input, { name, aggActors: aggAfter, windowActors: winAfter, gapMs })
          await runToCompletion(reference, { dataDir: refDir, epochIntervalMs: 30, log })

          const before = { name, limit, aggActors: aggBefore, windowActors: winBefore, gapMs }
          const firstDir = tempDataDir()
          await runToCut(input, before, firstDir)
          const sp = `${tempDataDir()}/sp`
          const manifest = await createSavepoint(roundTripPipeline(input, before), { dataDir: firstDir, target: sp, log })
          expect(readManifest(sp).id).toBe(manifest.id)

          const secondDir = tempDataDir()
          const after = roundTripPipeline(input, { name, aggActors: aggAfter, windowActors: winAfter, gapMs })
          await runToCompletion(after, { dataDir: secondDir, epochIntervalMs: 30, log, fromSavepoint: { dir: sp } })

          const expected = await outputs(reference, refDir)
          const firstOut = await outputs(roundTripPipeline(input, before), firstDir)
          const secondOut = await outputs(after, secondDir)
          const label = `cut at ${limit} of ${longest}, agg ${aggBefore}→${aggAfter}, sessions ${winBefore}→${winAfter}, gap ${gapMs}`
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
    if (RUNS >= 4) expect(covered.casesWithRecordsInFlight, 'some cuts left records in flight, which the drain processed').toBeGreaterThan(0)
  }, Math.max(120_000, RUNS * 20_000))
})
