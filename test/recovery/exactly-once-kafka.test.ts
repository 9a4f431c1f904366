/**
 * The exactly-once property on Kafka: random inputs, real SIGKILLs of child processes (at
 * protocol points via WEIR_CRASH_AT, or from outside after a random delay), restarts on the
 * same Kafka topics and data dir; the sink files, the count stage's output topic and the
 * dead letters (both read read_committed) and the final state equal a crash-free
 * reference run on the embedded pipe. So the same
 * pipeline gives the same results on both pipes, and nothing is lost or doubled on Kafka.
 *
 * WEIR_KAFKA_PROPERTY_RUNS sets the number of cases (default 20); WEIR_PROPERTY_SEED replays one.
 */
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import {
  arbitraries,
  removeDir,
  runFileToCompletion,
  runToCompletion,
  tempDataDir,
  type ProcessCrash,
} from '../../testing/index.ts'
import { requireService } from '../support/services.ts'
import { expectSame, observe } from './fixtures/observe.ts'
import { recoveryInputs, recoveryPipeline } from './fixtures/recovery-pipeline.ts'

const kafka = await requireService('kafka')
const RUNS = Number(process.env.WEIR_KAFKA_PROPERTY_RUNS ?? 20)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'recovery-pipeline.ts')
const run = randomUUID().slice(0, 6)
/** The count stage's topic is kept and read back read_committed, besides the sink's files. */
const KEEP = { keepEdges: true }
const dirs: string[] = []

const input = recoveryInputs(300)
// A child needs ~1-3 s to load, connect and join before it processes anything; kills land before, during and after that.
const crashes = fc.array(arbitraries.processCrash(6000), { minLength: 1, maxLength: 2 })

describe.skipIf(!kafka.available)('exactly-once recovery on Kafka', () => {
  it(`outputs and state after SIGKILLs on Kafka equal the crash-free reference (${RUNS} generated cases)`, async () => {
    const pipe = await KafkaPipe.connect({ brokers: kafka.url.split(',') })
    let caseNo = 0
    let kills = 0
    try {
      await fc.assert(
        fc.asyncProperty(input, crashes, async (inp, plan: ProcessCrash[]) => {
          const name = `rec-${run}-${caseNo++}`
          const refDir = tempDataDir('weir-ref-')
          const runDir = tempDataDir('weir-kafka-crash-')
          dirs.push(refDir, runDir)
          await runToCompletion(recoveryPipeline(inp, join(refDir, 'out'), name, KEEP), { dataDir: join(refDir, 'data') })
          const expected = await observe(inp, name, join(refDir, 'data'), join(refDir, 'out'), undefined, KEEP)

          const inputFile = join(runDir, 'input.json')
          writeFileSync(inputFile, JSON.stringify(inp))
          const r = await runFileToCompletion(FIXTURE, {
            dataDir: join(runDir, 'data'),
            params: { input: inputFile, out: join(runDir, 'out'), name, keepEdges: 'true' },
            crashes: plan,
            epochIntervalMs: 100,
            timeoutMs: 120_000,
            env: { WEIR_PIPE: `kafka://${kafka.url}` },
          })
          kills += r.kills
          const actual = await observe(inp, name, join(runDir, 'data'), join(runDir, 'out'), pipe, KEEP)
          expectSame(expected, actual, `${name} ${JSON.stringify(plan)}`)
          removeDir(refDir)
          removeDir(runDir)
        }),
        { numRuns: RUNS, seed: SEED, verbose: 1, endOnFailure: true },
      )
    } finally {
      for (const t of (await pipe.listTopics()).filter((t) => t.startsWith(`weir.rec-${run}-`))) await pipe.deleteTopic(t).catch(() => undefined)
      await pipe.close()
    }
    expect(kills, 'some cases must SIGKILL real processes').toBeGreaterThan(0)
  }, 1_500_000)
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
