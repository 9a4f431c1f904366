/**
 * StoreSink, the base of the exactly-once sinks into stores with transactions, proven on a
 * real store with no service to start: SQLite (node:sqlite) through the example sink of
 * docs/sinks.md. Child processes are SIGKILLed at generated points; the table then holds every
 * record once (an append-only table: a doubled or lost row shows), the rows SQLite refuses are
 * dead letters once each, and an older instance's write is refused.
 */
import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { fc, readDeadLetters, removeTempDirs, runFileToCompletion, runToCompletion, tempDataDir, type CrashPoint, type ProcessCrash } from '../../../testing/index.ts'
import { SinkFencedError, WeirError, startEmbedded } from '../../../index.ts'
import sqliteSinkPipeline, { SCHEMA, isPoison } from './fixtures/sqlite-sink-pipeline.ts'
import { SqliteSink } from '../../../examples/sinks/sqlite-sink.ts'
import type { LifecycleContext } from '../../../runtime/api/processor.ts'
import pino from 'pino'
import { unpack } from 'msgpackr'

afterAll(removeTempDirs)

const FIXTURE = join(import.meta.dirname, 'fixtures', 'sqlite-sink-pipeline.ts')
// The worked example's property; the built-in sinks' own properties (test/processors/sinks/) take 20 by default.
const RUNS = Number(process.env.WEIR_SQLITE_PROPERTY_RUNS ?? process.env.WEIR_PROPERTY_RUNS ?? 6)
/** Records per micro-batch of the child runs: a crash placed after K records has at least one batch after it. */
const MAX_BATCH = 50
const POINTS: CrashPoint[] = ['mid-batch', 'before-commit', 'after-pipe-commit', 'after-local-write', 'before-publish', 'after-publish']

function makeDb(path: string): void {
  const db = new DatabaseSync(path)
  db.exec(SCHEMA)
  db.close()
}

function rows(path: string): number[] {
  const db = new DatabaseSync(path)
  try {
    return (db.prepare('SELECT n FROM events').all() as Array<{ n: number }>).map((r) => r.n).sort((a, b) => a - b)
  } finally {
    db.close()
  }
}

/** How many records the sink still has to process at least: what the store's progress has not reached. */
function remaining(path: string, count: number, partitions: number): number {
  const db = new DatabaseSync(path)
  try {
    const reached = (db.prepare("SELECT positions FROM weir_sink_progress WHERE stage = 'db'").all() as Array<{ positions: string }>)
      .map((r) => Object.values(JSON.parse(r.positions) as Record<string, number>).reduce((a, b) => a + b, 0))
      .reduce((a, b) => a + b, 0)
    return count * partitions - reached
  } catch {
    return count * partitions
  } finally {
    db.close()
  }
}

const expected = (count: number, partitions: number): number[] => Array.from({ length: count * partitions }, (_, i) => i).filter((n) => !isPoison(n))
const poisons = (count: number, partitions: number): number[] => Array.from({ length: count * partitions }, (_, i) => i).filter(isPoison)

describe('StoreSink on SQLite', () => {
  it(`holds every record once and every refused row as one dead letter after SIGKILLs at generated points (${RUNS} cases)`, async () => {
    const covered = { cases: 0, crashes: 0, fired: 0, moved: 0, rows: 0, deadLetters: 0, maxCount: 0 }
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 150, max: 1500 }),
        fc.integer({ min: 1, max: 2 }),
        fc.array(fc.record({ point: fc.constantFrom(...POINTS), at: fc.double({ min: 0, max: 0.9, noNaN: true }) }), { minLength: 1, maxLength: 4, size: 'max' }),
        async (count, partitions, plans) => {
          const dir = tempDataDir('weir-sqlite-sink-')
          const db = join(dir, 'out.db')
          makeDb(db)
          const params = { count: String(count), partitions: String(partitions), db, batchRows: '37' }
          const crashes = plans.map((plan) => (): ProcessCrash => {
            // Placed by records the sink still has to process in this run, so the point is certain to come.
            const left = remaining(db, count, partitions)
            // Hits are counted at the end of a micro-batch: leave two of them after the place.
            // Too little left for that (the store holds nearly everything): every run still takes a last checkpoint.
            if (left < 3 * MAX_BATCH) {
              covered.moved++
              return { kind: 'point', spec: { point: 'before-commit', hit: 1 } }
            }
            const records = Math.floor(plan.at * (left - 2 * MAX_BATCH))
            return { kind: 'point', spec: { point: plan.point, hit: 1, afterRecords: { stage: 'db', records } } }
          })
          const run = await runFileToCompletion(FIXTURE, { dataDir: join(dir, 'data'), params, crashes, epochIntervalMs: 20, timeoutMs: 90_000, env: { WEIR_MAX_BATCH: String(MAX_BATCH) } })
          expect(run.crashed.length, `planned ${JSON.stringify(run.planned)}`).toBe(plans.length)
          const got = rows(db)
          expect(got).toEqual(expected(count, partitions))
          const pipeline = sqliteSinkPipeline(params)
          const dead = await readDeadLetters(pipeline, join(dir, 'data'), 'db')
          const deadNumbers = dead.map((d) => unpack(d.value.value!) as number).sort((a, b) => a - b)
          expect(deadNumbers).toEqual(poisons(count, partitions))
          expect(dead.every((d) => /CHECK constraint/i.test(d.value.error.message))).toBe(true)
          covered.cases++
          covered.crashes += plans.length
          covered.fired += run.crashed.length
          covered.rows += got.length
          covered.deadLetters += dead.length
          covered.maxCount = Math.max(covered.maxCount, count * partitions)
        },
      ),
      { numRuns: RUNS },
    )
    console.log(`[sqlite sink property] ${JSON.stringify(covered)}`)
    expect(covered.fired).toBe(covered.crashes)
  }, 1_800_000)

  it('refuses the write of an instance whose actor a newer instance claimed', async () => {
    const dir = tempDataDir('weir-sqlite-sink-')
    const path = join(dir, 'out.db')
    makeDb(path)
    const ctx = lifecycle(dir)
    const older = new SqliteSink<number>({ path, table: 'events', row: (r) => ({ n: r.value, p: 0 }) })
    const newer = new SqliteSink<number>({ path, table: 'events', row: (r) => ({ n: r.value, p: 0 }) })
    await older.open(ctx)
    await newer.open(ctx)
    const write = (older as unknown as { write(b: unknown): Promise<unknown> }).write({
      actor: { pipeline: 'p', stage: 'db', partition: 0 }, generation: 1, checkpoint: 1, epoch: 1, from: {}, to: { t: 1 },
      rows: [{ row: { n: 1, p: 0 }, record: {} }], progress: () => ({ generation: 1, positions: { t: 1 }, checkpoint: 1, epoch: 1, deadLetters: [] }),
    })
    await expect(write).rejects.toBeInstanceOf(SinkFencedError)
    expect(rows(path)).toEqual([])
    await older.close()
    await newer.close()
  })

  it('stops a run whose sink another run fenced, naming why, instead of waiting for an instance it does not have', async () => {
    const dir = tempDataDir('weir-sqlite-sink-')
    const db = join(dir, 'out.db')
    makeDb(db)
    const params = { count: '100000', partitions: '1', db, batchRows: '5', rate: '400', name: 'fenced-run' }
    const first = await startEmbedded(sqliteSinkPipeline(params), { dataDir: join(dir, 'first'), epochIntervalMs: 50, log: pino({ level: 'silent' }) })
    const failed = first.done.then(() => undefined, (err: unknown) => err as WeirError)
    await until(() => rows(db).length > 20)
    // A second run on another data dir claims the same actor's progress in the same table.
    const second = await startEmbedded(sqliteSinkPipeline(params), { dataDir: join(dir, 'second'), epochIntervalMs: 50, log: pino({ level: 'silent' }) })
    // The second run's offsets would mean other records: it stops too, at its first record.
    const secondFailed = second.done.then(() => undefined, (e: unknown) => e as WeirError)
    const err = await Promise.race([failed, new Promise<string>((r) => setTimeout(() => r('still running after 20 s'), 20_000))])
    expect((await secondFailed)?.message).toMatch(/belongs to another run of the pipeline/)
    expect(err).toBeInstanceOf(WeirError)
    expect((err as WeirError).code).toBe('WEIR_ACTOR_FENCED')
    expect((err as WeirError).message).toMatch(/db\/0 was fenced by another instance of it, which this run does not have: another run of pipeline 'fenced-run'.*generation 2 claimed db\/0/)
  }, 60_000)

  it('refuses to start on a store holding the progress of another run of the pipeline, naming how to reset it', async () => {
    const dir = tempDataDir('weir-sqlite-sink-')
    const db = join(dir, 'out.db')
    makeDb(db)
    const params = { count: '400', partitions: '1', db, batchRows: '20' }
    await runToCompletion(sqliteSinkPipeline(params), { dataDir: join(dir, 'first'), epochIntervalMs: 10, actorConfig: { maxBatch: 50 } })
    expect(rows(db)).toEqual(expected(400, 1))
    // A new data dir: offsets start again at 0 and mean other records.
    await expect(runToCompletion(sqliteSinkPipeline(params), { dataDir: join(dir, 'second'), epochIntervalMs: 10, actorConfig: { maxBatch: 50 } }))
      .rejects.toThrow(/belongs to another run of the pipeline.*DELETE FROM weir_sink_progress WHERE pipeline = 'sqlite-sink' AND stage = 'db' AND partition = 0/s)
    expect(rows(db)).toEqual(expected(400, 1))
  })
})

async function until(check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 50))
  }
}

function lifecycle(workDir: string): LifecycleContext {
  return {
    pipeline: 'p', stage: 'db', partition: 0, partitions: 1, log: pino({ level: 'silent' }), sideOutputs: [], workDir,
    deadLetter: () => undefined, waitingOn: () => undefined, reportStats: () => undefined, wake: () => undefined,
  }
}
