/**
 * The exactly-once property on Kafka: random inputs, real SIGKILLs of child processes (at
 * protocol points via WEIR_CRASH_AT, or from outside after a random delay), restarts on the
 * same Kafka topics and data dir; the sink files, the dead letters (read read_committed)
 * and the final state equal a crash-free reference run on the embedded pipe. So the same
 * pipeline gives the same results on both pipes, and nothing is lost or doubled on Kafka.
 *
 * WEIR_KAFKA_PROPERTY_RUNS sets the number of cases (default 20); WEIR_PROPERTY_SEED replays one.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import {
  arbitraries,
  listFiles,
  multisetDiff,
  readDeadLetters,
  readState,
  removeDir,
  runFileToCompletion,
  runToCompletion,
  tempDataDir,
  type ProcessCrash,
} from '../../runtime/testing/index.ts'
import { requireService } from '../support/services.ts'
import { recoveryPipeline, type RecoveryInput } from './fixtures/recovery-pipeline.ts'

const kafka = await requireService('kafka')
const RUNS = Number(process.env.WEIR_KAFKA_PROPERTY_RUNS ?? 20)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'recovery-pipeline.ts')
const run = randomUUID().slice(0, 6)
const dirs: string[] = []

const word = fc.constantFrom('ant', 'bee', 'cat', 'dog', 'eel', 'fox', 'gnu', 'hen', 'ibis', 'jay', 'koi', 'lark')
const line = fc.oneof(
  { weight: 30, arbitrary: fc.array(word, { minLength: 1, maxLength: 6 }).map((ws) => ws.join(' ')) },
  { weight: 1, arbitrary: fc.constant('POISON pill') },
)
const input: fc.Arbitrary<RecoveryInput> = fc.record({
  partitions: fc.array(fc.array(line, { minLength: 0, maxLength: 300 }), { minLength: 1, maxLength: 3 }),
})
// A child needs ~1-3 s to load, connect and join before it processes anything; kills land before, during and after that.
const crashes = fc.array(arbitraries.processCrash(6000), { minLength: 1, maxLength: 2 })

interface Observed {
  /** Every sink line as [word, timestamp of the line it came from]: a multiset, so a loss or a double shows. */
  counted: unknown[]
  /** Per word, the counts it emitted in order: must be 1..N. */
  sequences: Record<string, number[]>
  deadLetters: unknown[]
  /** Final count and by-length state per word. */
  state: unknown
}

/**
 * Three split actors write into each count partition, so the interleaving of their records
 * in the count's input depends on when each one's transactions commit (on Kafka as on any
 * log): which occurrence of a word gets which count may differ from the reference. What
 * exactly-once promises, and what this compares: every input word counted exactly once,
 * counts 1..N without gaps or repeats, each writer's records in their order, equal final counts.
 */
async function observe(inp: RecoveryInput, name: string, dataDir: string, outDir: string, pipe?: KafkaPipe): Promise<Observed> {
  const p = recoveryPipeline(inp, outDir, name)
  const lines = listFiles(outDir).flatMap((f) => readFileSync(f, 'utf8').split('\n').filter((l) => l !== '')).map((l) => JSON.parse(l) as { key: string; value: { n: number }; timestamp: number })
  const byWord = new Map<string, Array<{ n: number; timestamp: number }>>()
  for (const l of lines) {
    let list = byWord.get(l.key)
    if (list === undefined) byWord.set(l.key, (list = []))
    list.push({ n: l.value.n, timestamp: l.timestamp })
  }
  const sequences: Record<string, number[]> = {}
  for (const [word, list] of byWord) {
    list.sort((a, b) => a.n - b.n)
    sequences[word] = list.map((x) => x.n)
    // Per writer (source partition = timestamp % 16), its lines arrive in order.
    const lastByWriter = new Map<number, number>()
    for (const x of list) {
      const writer = x.timestamp % 16
      expect(x.timestamp, `${name}: ${word} counted a line of partition ${writer} out of order`).toBeGreaterThanOrEqual(lastByWriter.get(writer) ?? 0)
      lastByWriter.set(writer, x.timestamp)
    }
  }
  // Offsets differ between pipes (Kafka has commit markers): identify a dead letter by partition, timestamp and bytes.
  const deadLetters = (await readDeadLetters(p, pipe ?? dataDir, 'split')).map((r) => [r.value.origin.partition, r.value.origin.timestamp, r.value.value?.toString(), r.value.error.code, r.value.attempts])
  const keyed = (await readState(p, dataDir, 'count')).keyed
  return { counted: lines.map((l) => [l.key, l.timestamp]), sequences, deadLetters, state: { count: keyed.count, byLength: keyed['by-length'] } }
}

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
          await runToCompletion(recoveryPipeline(inp, join(refDir, 'out'), name), { dataDir: join(refDir, 'data') })
          const expected = await observe(inp, name, join(refDir, 'data'), join(refDir, 'out'))

          const inputFile = join(runDir, 'input.json')
          writeFileSync(inputFile, JSON.stringify(inp))
          const r = await runFileToCompletion(FIXTURE, {
            dataDir: join(runDir, 'data'),
            params: { input: inputFile, out: join(runDir, 'out'), name },
            crashes: plan,
            epochIntervalMs: 100,
            timeoutMs: 120_000,
            env: { WEIR_PIPE: `kafka://${kafka.url}` },
          })
          kills += r.kills
          const actual = await observe(inp, name, join(runDir, 'data'), join(runDir, 'out'), pipe)
          for (const part of ['counted', 'deadLetters'] as const) {
            const diff = multisetDiff(expected[part], actual[part])
            expect(diff, `${name} ${JSON.stringify(plan)}: ${part} differs (missing = lost, extra = doubled)`).toEqual({ missing: [], extra: [] })
          }
          expect(actual.sequences, `${name} ${JSON.stringify(plan)}: counts per word are not 1..N`).toEqual(expected.sequences)
          expect(actual.state, `${name} ${JSON.stringify(plan)}: final state differs`).toEqual(expected.state)
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
