/**
 * A Kafka broker restart in the middle of a run: producers, readers and admin calls ride
 * it out (retries with backoff; an actor whose pipe failed restarts from its checkpoint),
 * and the output is exact: every word counted once, counts 1..N per word.
 *
 * The test starts its own single-node broker with scripts/services.sh (other ports, its
 * own data dir), so bouncing it does not disturb the tests that share the main broker.
 */
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CountWords, SplitWords } from '../../examples/wordcount.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { codecFor } from '../../runtime/codec.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import { Pipeline } from '../../runtime/api/pipeline.ts'
import { readTopic, removeDir, tempDataDir } from '../../testing/index.ts'
import { requireService } from '../support/services.ts'

const run = promisify(execFile)
const kafka = await requireService('kafka')
const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'services.sh')
const servicesDir = tempDataDir('weir-broker-restart-services-')
const BROKER = '127.0.0.1:19292'
const env = { ...process.env, WEIR_SERVICES_DIR: servicesDir, WEIR_KAFKA_BROKERS: BROKER, WEIR_KAFKA_CONTROLLER_PORT: '19293' }
const services = (cmd: string): Promise<unknown> => run('bash', [SCRIPT, cmd, ...(cmd === 'up' ? ['kafka'] : [])], { env, timeout: 180_000 })

const WORDS = ['ant', 'bee', 'cat', 'dog', 'eel', 'fox', 'gnu']
const LINES_PER_PARTITION = 400
const line = (i: number, p: number): string => Array.from({ length: 4 }, (_, w) => WORDS[(i * 3 + w * 5 + p) % WORDS.length]).join(' ')

describe.skipIf(!kafka.available)('a Kafka broker restart during a run', () => {
  beforeAll(() => services('up'), 200_000)
  afterAll(async () => {
    await services('down').catch(() => undefined)
    removeDir(servicesDir)
  }, 60_000)

  it('loses and doubles nothing', async () => {
    const id = randomUUID().slice(0, 8)
    const pipeline = new Pipeline(`broker-restart-${id}`, { purgeConsumedRecords: false })
    pipeline
      .source<string>('lines', () => new GeneratorSource<string>({ count: LINES_PER_PARTITION, ratePerSecond: 25, generate: (i, p) => ({ key: null, value: line(i, p) }) }), { partitions: 2 })
      .process('split', SplitWords).keyBy(3)
      .process('count', CountWords)
    const pipe = await KafkaPipe.connect({ brokers: [BROKER] })
    const dataDir = tempDataDir('weir-broker-restart-')
    let started: Awaited<ReturnType<typeof startEmbedded>> | undefined
    try {
      started = await startEmbedded(pipeline, { dataDir, pipe, epochIntervalMs: 200 })
      // Let it commit some epochs (however long start-up takes on a busy machine), then bounce
      // the broker while the sources are still emitting (they emit for 16 s).
      const committedSome = Date.now() + 60_000
      while (started.completedEpoch() < 3 && Date.now() < committedSome) await new Promise((r) => setTimeout(r, 100))
      const before = Object.values(started.stats()).reduce((n, s) => n + s.recordsOut, 0)
      expect(before).toBeGreaterThan(0)
      const t0 = Date.now()
      await services('restart-kafka')
      const outageMs = Date.now() - t0
      const result = await started.done
      expect(result.outcome).toBe('finished')
      const after = Object.values(result.stats).find((s) => s.recordsOut > 0)
      expect(after).toBeDefined()

      const out = await readTopic<number>(pipe, pipeline.outputTopic(pipeline.stage('count')!), codecFor('msgpack'))
      const expected = new Map<string, number>()
      for (let p = 0; p < 2; p++) for (let i = 0; i < LINES_PER_PARTITION; i++) for (const w of line(i, p).split(' ')) expected.set(w, (expected.get(w) ?? 0) + 1)
      const seen = new Map<string, number[]>()
      for (const r of out) {
        const list = seen.get(r.key!) ?? []
        list.push(r.value)
        seen.set(r.key!, list)
      }
      expect(out.length, `broker was down ${outageMs} ms`).toBe(LINES_PER_PARTITION * 2 * 4)
      for (const [word, n] of expected) expect(seen.get(word)!.sort((a, b) => a - b), word).toEqual(Array.from({ length: n }, (_, i) => i + 1))
    } finally {
      // A failed check leaves the run going: stop it before its state dir goes.
      await started?.stop().catch(() => undefined)
      await pipe.close()
      removeDir(dataDir)
    }
  }, 300_000)
})
