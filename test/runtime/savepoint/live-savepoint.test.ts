/**
 * A savepoint of a running pipeline (runtime/savepoint/live.ts), as a property: a paced run
 * is savepointed at a generated moment while it processes and goes on running; a pipeline
 * with other actor counts restored from the savepoint onto a new pipe runs the rest. The
 * running pipeline's outputs up to the cut (the manifest says where each output ended) and
 * the restored run's outputs together, and the restored run's final state, equal one
 * uninterrupted run's. The pipeline is held (no input taken) only from the hold to the
 * release: the time is printed.
 *
 * WEIR_LIVE_SAVEPOINT_PROPERTY_RUNS sets the number of cases (default 5); WEIR_PROPERTY_SEED replays one.
 */
import { afterAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import pino from 'pino'
import { multisetDiff, readCommittedState, readStageOutput, removeTempDirs, runToCompletion, tempDataDir } from '../../../testing/index.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
import { readManifest } from '../../../runtime/savepoint/manifest.ts'
import { roundTripInputs, roundTripPipeline } from './fixtures/roundtrip-pipeline.ts'

const RUNS = Number(process.env.WEIR_LIVE_SAVEPOINT_PROPERTY_RUNS ?? 5)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const log = pino({ level: process.env.WEIR_TEST_LOG ?? 'silent' })

afterAll(() => removeTempDirs())

describe('live savepoint', () => {
  it(`taken while the pipeline runs, restored at other parallelisms onto a new pipe: outputs up to the cut plus the restored run's, and its final state, equal an uninterrupted run's (${RUNS} generated cases)`, async () => {
    const covered = { cases: 0, events: 0, keys: 0, timers: 0, rescaled: 0, rounds: 0, heldMs: [] as number[], outputsBeforeCut: 0, outputsAfterCut: 0, ms: 0 }
    const started = Date.now()
    await fc.assert(
      fc.asyncProperty(
        // Paced at 300 events/s, a partition of 400 or more runs past the savepoint (at most 1 s in).
        roundTripInputs(600).filter((i) => i.partitions.some((p) => p.length >= 400)),
        fc.integer({ min: 100, max: 1000 }),
        fc.constantFrom(1, 2, 3), fc.constantFrom(1, 2, 4), fc.constantFrom(1, 3), fc.constantFrom(2, 3),
        fc.integer({ min: 30, max: 300 }),
        async (input, afterMs, aggBefore, aggAfter, winBefore, winAfter, gapMs) => {
          const name = 'live'
          const refDir = tempDataDir()
          const reference = roundTripPipeline(input, { name, aggActors: aggAfter, windowActors: winAfter, gapMs })
          await runToCompletion(reference, { dataDir: refDir, epochIntervalMs: 30, log })

          // Paced at 300 events/s per partition: still running when the savepoint comes.
          const before = roundTripPipeline(input, { name, rate: 300, aggActors: aggBefore, windowActors: winBefore, gapMs })
          const firstDir = tempDataDir()
          const run = await startEmbedded(before, { dataDir: firstDir, epochIntervalMs: 30, log })
          await new Promise((r) => setTimeout(r, afterMs))
          const sp = await run.savepoint()
          // It runs on after the cut; what it writes from there on is the restored run's to write.
          await new Promise((r) => setTimeout(r, 100))
          await run.stop()
          const manifest = readManifest(sp.dir)
          expect(manifest.cut?.heldMs).toBe(sp.heldMs)

          const secondDir = tempDataDir()
          const after = roundTripPipeline(input, { name, aggActors: aggAfter, windowActors: winAfter, gapMs })
          await runToCompletion(after, { dataDir: secondDir, epochIntervalMs: 30, log, fromSavepoint: { dir: sp.dir } })

          const label = `savepoint after ${afterMs} ms, agg ${aggBefore}→${aggAfter}, sessions ${winBefore}→${winAfter}, gap ${gapMs}`
          for (const stage of ['agg', 'sessions']) {
            const ends = manifest.cut!.outputEnds[before.outputTopic(before.stage(stage)!)]!
            const firstAll = await readStageOutput(before, firstDir, stage)
            const firstOut = firstAll.filter((r) => r.offset < ends[String(r.partition)]!)
            const secondOut = await readStageOutput(after, secondDir, stage)
            const expected = await readStageOutput(reference, refDir, stage)
            expect(multisetDiff(expected.map((r) => r.value), [...firstOut, ...secondOut].map((r) => r.value)), `${label}: ${stage} outputs`).toEqual({ missing: [], extra: [] })
            covered.outputsBeforeCut += firstOut.length
            covered.outputsAfterCut += secondOut.length
          }
          for (const stage of ['events', 'agg', 'sessions']) {
            expect((await readCommittedState(after, secondDir, stage)).keyed, `${label}: ${stage} keyed state`).toEqual((await readCommittedState(reference, refDir, stage)).keyed)
          }
          covered.cases++
          covered.events += input.partitions.reduce((n, p) => n + p.length, 0)
          covered.keys += Object.values(manifest.stages).reduce((n, s) => n + s.actors.reduce((m, a) => m + Object.values(a.keys).reduce((x, y) => x + y, 0), 0), 0)
          covered.timers += Object.values(manifest.stages).reduce((n, s) => n + s.actors.reduce((m, a) => m + a.timers, 0), 0)
          if (aggBefore !== aggAfter || winBefore !== winAfter) covered.rescaled++
          covered.rounds += sp.rounds
          covered.heldMs.push(sp.heldMs)
        },
      ),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    )
    covered.ms = Date.now() - started
    console.log(`live savepoint: ${JSON.stringify(covered)}`)
    expect(covered.cases).toBe(RUNS)
    expect(covered.outputsBeforeCut, 'the cuts came while the pipeline had written outputs').toBeGreaterThan(0)
    expect(covered.outputsAfterCut, 'the restored runs wrote the rest').toBeGreaterThan(0)
  }, Math.max(120_000, RUNS * 30_000))
})
