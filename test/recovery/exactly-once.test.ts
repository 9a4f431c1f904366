/**
 * The exactly-once property: for random inputs and random crash schedules (crash points
 * inside the checkpoint protocol, mid-batch, during replay; real SIGKILLs of child
 * processes in part of the cases), the restarted pipeline's sink files, dead letters and
 * final state equal a crash-free reference in what exactly-once promises
 * (fixtures/observe.ts): nothing lost, nothing doubled.
 *
 * WEIR_PROPERTY_RUNS sets the number of cases (default 100); WEIR_PROPERTY_SEED replays one.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import {
  arbitraries,
  removeDir,
  runFileToCompletion,
  runToCompletion,
  tempDataDir,
  type ProcessCrash,
} from '../../testing/index.ts'
import { expectSame, observe } from './fixtures/observe.ts'
import { recoveryInputs, recoveryPipeline } from './fixtures/recovery-pipeline.ts'

const RUNS = Number(process.env.WEIR_PROPERTY_RUNS ?? 100)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'recovery-pipeline.ts')
const dirs: string[] = []
/** Changelogs are compacted all the time in the crashing runs, so recovery replays compacted logs. */
const COMPACT_OFTEN = { compactionMinDirtyRecords: 4, compactionMinIntervalMs: 0 }

const input = recoveryInputs(400)

type Mode = { kind: 'in-process'; crashes: ReturnType<typeof arbitraries.crashSchedule> extends fc.Arbitrary<infer T> ? T : never } | { kind: 'sigkill'; crashes: ProcessCrash[] }

const mode: fc.Arbitrary<Mode> = fc.oneof(
  { weight: 4, arbitrary: arbitraries.crashSchedule(3).map((crashes): Mode => ({ kind: 'in-process', crashes })) },
  { weight: 1, arbitrary: fc.array(arbitraries.processCrash(1200), { minLength: 1, maxLength: 2 }).map((crashes): Mode => ({ kind: 'sigkill', crashes })) },
)

describe('exactly-once recovery', () => {
  it(`outputs and state after crashes equal the crash-free reference (${RUNS} generated cases)`, async () => {
    let sigkillCases = 0
    await fc.assert(
      fc.asyncProperty(input, mode, async (inp, m) => {
        const refDir = tempDataDir('weir-ref-')
        const runDir = tempDataDir('weir-crash-')
        dirs.push(refDir, runDir)
        await runToCompletion(recoveryPipeline(inp, join(refDir, 'out')), { dataDir: join(refDir, 'data') })
        const expected = await observe(inp, 'recovery', join(refDir, 'data'), join(refDir, 'out'))
        if (m.kind === 'in-process') {
          await runToCompletion(recoveryPipeline(inp, join(runDir, 'out')), { dataDir: join(runDir, 'data'), crashes: m.crashes, epochIntervalMs: 20, actorConfig: { maxBatch: 64 }, pipeOptions: COMPACT_OFTEN })
        } else {
          sigkillCases++
          const inputFile = join(runDir, 'input.json')
          writeFileSync(inputFile, JSON.stringify(inp))
          await runFileToCompletion(FIXTURE, { dataDir: join(runDir, 'data'), params: { input: inputFile, out: join(runDir, 'out') }, crashes: m.crashes, epochIntervalMs: 20, env: { WEIR_COMPACTION_MIN_DIRTY: String(COMPACT_OFTEN.compactionMinDirtyRecords) } })
        }
        const actual = await observe(inp, 'recovery', join(runDir, 'data'), join(runDir, 'out'))
        expectSame(expected, actual, `${m.kind} ${JSON.stringify(m.crashes)}`)
        removeDir(refDir)
        removeDir(runDir)
      }),
      { numRuns: RUNS, seed: SEED, verbose: 1, endOnFailure: true },
    )
    expect(sigkillCases, 'some cases must SIGKILL real processes').toBeGreaterThan(0)
  }, 1_500_000)
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
