/**
 * Views read committed state only, across crashes: a generated word count (1-2 source
 * partitions of 300-1,500 lines, paced to run about 1.5 s at 20 ms checkpoints, so a case
 * spans many epochs) runs under real `weir run` processes that are SIGKILLed at generated
 * places (at checkpoint protocol points through WEIR_CRASH_AT, or from here after a delay),
 * while readers in this process hammer the views over HTTP (random words and prefix pages,
 * each process's server found in its views.json). Every answer is checked against the
 * count stage's committed input, kept whole (`purgeConsumedRecords: false`) and read back
 * after the run: an answer naming input position P for a key of partition p holds exactly
 * the key's records below P in partition p (found: false means none), so no answer shows a
 * value that no committed checkpoint held; per key, an answer asked after another was
 * answered shows no older epoch or lower position, within a process and across restarts
 * (fixtures/view-history.ts). Every planned crash must fire (fixtures/views-crash-plan.ts).
 * The run prints one JSON line of what it covered.
 *
 * WEIR_VIEWS_PROPERTY_RUNS sets the number of cases (default 4, about 30 s); WEIR_PROPERTY_SEED replays one.
 */
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { removeDir, tempDataDir } from '../../testing/index.ts'
import { startWeir } from '../support/weir-cli.ts'
import { checkViewHistory, committedInput } from './fixtures/view-history.ts'
import { ViewReaders } from './fixtures/view-readers.ts'
import { measureViewsRun, translateViewsCrash, viewsCrashPlans, type ViewsCrashPlan } from './fixtures/views-crash-plan.ts'
import { COUNT_STAGE, PIPELINE, PREFIXES, VIEW, VOCABULARY, viewsInputs, viewsPipeline, wordsOf, type ViewsInput } from './fixtures/views-pipeline.ts'

const RUNS = Number(process.env.WEIR_VIEWS_PROPERTY_RUNS ?? 4)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'views-pipeline.ts')
const EPOCH_MS = 20
/** How long the sources of a whole case emit, paced: long enough for many epochs and answers. */
const PACED_MS = 1500
const READERS = 6
const dirs: string[] = []

interface CaseCoverage {
  lines: number
  words: number
  planned: number
  fired: number
  moved: number
  dropped: number
  processes: number
  incarnationsAnswered: number
  checked: number
  found: number
  lookups: number
  scans: number
  distinctEpochs: number
  maxEpoch: number
  epochAdvances: number
  transportErrors: number
  statuses: Record<string, number>
  ms: number
}

/** Runs `weir run` once with the readers attached; `crash` kills it (at a protocol point, or from here). */
async function runOnce(dataDir: string, inputFile: string, rate: number, readers: ViewReaders, incarnation: number, crash?: { kind: 'point'; env: string } | { kind: 'timer'; afterMs: number }): Promise<{ killed: boolean; finished: boolean; stderr: string }> {
  // A killed process leaves its views.json: the readers take only the running process's.
  rmSync(join(dataDir, 'views.json'), { force: true })
  const args = ['run', FIXTURE, '--data-dir', dataDir, '--epoch-ms', String(EPOCH_MS), '--param', `input=${inputFile}`, '--param', `rate=${rate}`, '-q']
  const { child, done } = startWeir(args, { env: crash?.kind === 'point' ? { WEIR_CRASH_AT: crash.env } : {} })
  readers.attach(child.pid, incarnation)
  let timer: NodeJS.Timeout | undefined
  if (crash?.kind === 'timer') {
    // Timed from the moment the views server is up: the sources started just before it.
    void readers.serverUrl(30_000).then((url) => {
      if (url !== undefined) timer = setTimeout(() => child.kill('SIGKILL'), crash.afterMs)
    })
  }
  const outcome = await done
  clearTimeout(timer)
  readers.attach(undefined)
  const finished = /^outcome:\s+finished/m.test(outcome.stdout)
  return { killed: outcome.signal === 'SIGKILL' && !finished, finished: finished && outcome.code === 0, stderr: outcome.stderr }
}

describe('views under crashes', () => {
  it(`concurrent readers see only committed checkpoints, epochs never going backwards per key (${RUNS} generated cases)`, async () => {
    const covered: CaseCoverage[] = []
    const started = Date.now()
    try {
      await fc.assert(
        fc.asyncProperty(viewsInputs(300, 1500), viewsCrashPlans(2), fc.integer({ min: 1, max: 0x7fff_ffff }), async (input: ViewsInput, plans: ViewsCrashPlan[], readerSeed: number) => {
          const caseStart = Date.now()
          const dir = tempDataDir('weir-views-prop-')
          dirs.push(dir)
          const dataDir = join(dir, 'data')
          const inputFile = join(dir, 'input.json')
          writeFileSync(inputFile, JSON.stringify(input))
          const pipeline = viewsPipeline(input)
          const rate = Math.max(1, Math.ceil((Math.max(...input.partitions.map((p) => p.length)) * 1000) / PACED_MS))
          const readers = new ViewReaders({ dataDir, pipeline: PIPELINE, view: VIEW, keys: [...VOCABULARY, 'zebra'], prefixes: PREFIXES, concurrency: READERS, seed: readerSeed, scanEvery: 5 })
          const planned: string[] = []
          const fired: string[] = []
          let moved = 0
          let dropped = 0
          let incarnation = 0
          try {
            for (const plan of plans) {
              const t = translateViewsCrash(plan, await measureViewsRun(pipeline, input, dataDir), rate)
              if (t === undefined) {
                dropped++
                continue
              }
              if (t.moved) moved++
              const label = t.crash.kind === 'point' ? `WEIR_CRASH_AT=${crashEnv(t.crash.spec)}` : `SIGKILL after ${t.crash.afterMs} ms`
              planned.push(label)
              const r = await runOnce(dataDir, inputFile, rate, readers, incarnation++, t.crash.kind === 'point' ? { kind: 'point', env: crashEnv(t.crash.spec) } : t.crash)
              if (r.killed) fired.push(label)
              else if (!r.finished) throw new Error(`weir run ended neither killed nor finished (${label}):\n${r.stderr}`)
            }
            const last = await runOnce(dataDir, inputFile, rate, readers, incarnation++)
            expect(last.finished, `the final run must finish:\n${last.stderr}`).toBe(true)
          } finally {
            await readers.stop()
          }
          const label = `${input.partitions.map((p) => p.length).join('+')} lines, crashes ${JSON.stringify(planned)}`
          expect(fired, `${label}: every planned crash must fire`).toEqual(planned)
          expect(readers.problems, `${label}: unexpected answers`).toEqual([])
          const report = checkViewHistory(readers.observations, await committedInput(pipeline, dataDir, COUNT_STAGE), [...VOCABULARY, 'zebra'])
          expect(report.problems, `${label}: answers that no committed checkpoint held`).toEqual([])
          const stats = readers.stats
          expect(stats.lookups + stats.scans, `${label}: the readers must get answers`).toBeGreaterThan(0)
          covered.push({
            lines: input.partitions.reduce((n, p) => n + p.length, 0), words: wordsOf(input), planned: planned.length, fired: fired.length, moved, dropped, processes: incarnation,
            incarnationsAnswered: stats.incarnationsAnswered, checked: report.checked, found: report.found, lookups: stats.lookups, scans: stats.scans,
            distinctEpochs: report.distinctEpochs, maxEpoch: report.maxEpoch, epochAdvances: report.epochAdvances, transportErrors: stats.transportErrors, statuses: stats.statuses, ms: Date.now() - caseStart,
          })
          removeDir(dir)
        }),
        { numRuns: RUNS, seed: SEED, verbose: 1, endOnFailure: true },
      )
    } finally {
      console.log(JSON.stringify(coverage(covered, Date.now() - started)))
    }
    // Over the cases, readers must have been answered by a process that was killed afterwards.
    expect(covered.some((c) => c.incarnationsAnswered > 1), 'some case must have answers from more than one process').toBe(true)
  }, Math.max(120_000, RUNS * 60_000))
})

function crashEnv(spec: { point: string; hit: number; afterRecords?: { stage: string; records: number } }): string {
  return `${spec.point}:${spec.hit}${spec.afterRecords === undefined ? '' : `@${spec.afterRecords.stage}:${spec.afterRecords.records}`}`
}

function coverage(cases: CaseCoverage[], wallMs: number): Record<string, unknown> {
  const sum = (f: (c: CaseCoverage) => number): number => cases.reduce((n, c) => n + f(c), 0)
  const statuses: Record<string, number> = {}
  for (const c of cases) for (const [s, n] of Object.entries(c.statuses)) statuses[s] = (statuses[s] ?? 0) + n
  return {
    property: 'views-consistency',
    cases: cases.length,
    wall_s: Math.round(wallMs / 100) / 10,
    lines: sum((c) => c.lines),
    words: sum((c) => c.words),
    crashes_planned: sum((c) => c.planned),
    crashes_fired: sum((c) => c.fired),
    crashes_moved_to_before_commit: sum((c) => c.moved),
    plans_dropped_nothing_left: sum((c) => c.dropped),
    processes: sum((c) => c.processes),
    restarts: sum((c) => c.processes - 1),
    processes_that_answered: sum((c) => c.incarnationsAnswered),
    answers: sum((c) => c.lookups + c.scans),
    lookups: sum((c) => c.lookups),
    scans: sum((c) => c.scans),
    key_states_checked: sum((c) => c.checked),
    found: sum((c) => c.found),
    absent: sum((c) => c.checked - c.found),
    distinct_epochs_per_case: cases.map((c) => c.distinctEpochs),
    max_epoch: Math.max(0, ...cases.map((c) => c.maxEpoch)),
    epoch_advances_seen: sum((c) => c.epochAdvances),
    transport_errors: sum((c) => c.transportErrors),
    statuses,
  }
}

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
