/**
 * `weir tail` end to end, as real child processes: after a `weir run` of the tail fixture
 * (compared with what weir/testing reads), beside a running `weir run` that holds the data
 * dir (the embedded pipe opened read-only sees its commits as they come), and on Kafka
 * (the same records as a read_committed kafkajs consumer; nothing of an aborted transaction).
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { Kafka, logLevel, type Consumer } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { msgpack } from '../../runtime/codec.ts'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import { EmbeddedPipe } from '../../runtime/pipe/embedded/embedded-pipe.ts'
import { CONTROL_HEADER } from '../../runtime/pipe/pipe.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'
import { parseTailArgs } from '../../cli/tail.ts'
import { readDeadLetters, readStageOutput, readTopic, type ReadRecord } from '../../testing/index.ts'
import { requireService } from '../support/services.ts'
import { ROOT, startWeir, tempDirs, until, waitFor, weir } from '../support/weir-cli.ts'
import tailing, { BASE_TIME } from './fixtures/tail.ts'

const FIXTURE = join(ROOT, 'test/cli/fixtures/tail.ts')
const tempDir = tempDirs('weir-tail-cli-')
const kafka = await requireService('kafka')

interface Line {
  stage: string
  topic: string
  partition: number
  offset: number
  key: string | null
  timestamp: number
  time: string
  headers: Record<string, string>
  value?: unknown
  decodeError?: string
  raw?: string
}

const lines = (stdout: string): Line[] => stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line)
const brief = (r: { partition: number; offset: number; key: string | null; value?: unknown; timestamp: number }): unknown => [r.partition, r.offset, r.key, r.value, r.timestamp]
const byTime = (a: ReadRecord, b: ReadRecord): number => a.timestamp - b.timestamp || a.partition - b.partition || a.offset - b.offset

describe('weir tail after a run', () => {
  let dataDir: string
  const tail = (...args: string[]): ReturnType<typeof weir> => weir(['tail', FIXTURE, ...args, '--data-dir', dataDir])

  beforeAll(async () => {
    dataDir = join(tempDir(), 'data')
    const r = await weir(['run', FIXTURE, '--data-dir', dataDir, '-q'])
    expect(r.code, r.stderr).toBe(0)
  }, 30_000)

  it('prints the records of a stage output as weir/testing reads them, merged by time; a line per record, or JSON', async () => {
    const expected = (await readStageOutput(tailing({}), dataDir, 'route')).sort(byTime)
    const json = await tail('route', '--json')
    expect(json.code, json.stderr).toBe(0)
    expect(lines(json.stdout).map(brief)).toEqual(expected.map(brief))
    const text = await tail('route', '--limit', '2')
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toBe('0@0  2023-11-14T22:13:20.000Z  key=k0  {"n":0,"p":0}\n1@0  2023-11-14T22:13:21.000Z  key=k1  {"n":1,"p":1}\n')
    expect(text.stderr).toBe('weir tail: 2 records of weir.tailing.route\n')
  })

  it('filters by --key, starts --from an ISO time, stops at --limit; shows a side output and the dead-letter topic', async () => {
    const all = (await readStageOutput(tailing({}), dataDir, 'route')).sort(byTime)
    const [keyed, timed, side, dead] = await Promise.all([
      tail('route', '--key', 'k2', '--limit', '4', '--json'),
      tail('route', '--from', new Date(BASE_TIME + 30_000).toISOString(), '--json'),
      tail('route.fives', '--json'),
      tail('route', '--dead-letter'),
    ])
    expect(lines(keyed.stdout).map(brief)).toEqual(all.filter((r) => r.key === 'k2').slice(0, 4).map(brief))
    expect(lines(timed.stdout).map(brief)).toEqual(all.filter((r) => r.timestamp >= BASE_TIME + 30_000).map(brief))
    expect(lines(side.stdout).map((l) => l.value)).toEqual([0, 5, 15, 20, 25, 30, 35])
    const deadLetters = await readDeadLetters(tailing({}), dataDir, 'route')
    const deadLines = dead.stdout.trim().split('\n')
    expect(deadLines).toHaveLength(deadLetters.length)
    expect(deadLines[0]).toBe('1@0  2023-11-14T22:13:23.000Z  key=k0  [WEIR_PROCESSING_FAILED] route failed on a record: route refuses 3  from weir.tailing.events/1@2  attempts=1  {"n":3,"p":1,"word":"w3"}')
  })

  it('has help, and refuses an unknown stage naming the closest, a data dir without a pipe, and bad options naming them', async () => {
    const [unknown, helpA, helpB, listed] = await Promise.all([tail('rout'), weir(['help', 'tail']), weir(['tail', '--help']), weir(['help'])])
    expect(helpA.stdout).toMatch(/^Usage: weir tail <pipeline.ts> <stage>/)
    expect(helpB.stdout).toBe(helpA.stdout)
    expect(listed.stdout).toMatch(/\n  tail <pipeline.ts> <stage>\n/)
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain("no stage 'rout' in pipeline 'tailing'; its stages are: events, route, route.fives; did you mean 'route'?")
    const nowhere = await weir(['tail', FIXTURE, 'route', '--data-dir', tempDir()])
    expect(nowhere.code).toBe(2)
    expect(nowhere.stderr).toMatch(/--data-dir: .* holds no embedded pipe: has pipeline tailing run with this data dir\?/)
    expect(() => parseTailArgs(['p.ts', 'route', '--from', 'yesterday'])).toThrow(/--from: 'yesterday' is not a start/)
    expect(() => parseTailArgs(['p.ts', 'route', '--limit', '0'])).toThrow(/--limit: must be a positive integer, got '0'/)
    expect(() => parseTailArgs(['p.ts', 'route', '--partition', 'x'])).toThrow(/--partition/)
    expect(() => parseTailArgs(['p.ts', 'route', '--folow'])).toThrow(/did you mean --follow\?/)
    expect(() => parseTailArgs(['p.ts'])).toThrow(/expected a pipeline file and a stage/)
    expect(parseTailArgs(['p.ts', 'route'], '/x', {})).toMatchObject({ from: 'earliest', limit: 100, follow: false })
    expect(parseTailArgs(['p.ts', 'route', '-f'], '/x', {})).toMatchObject({ from: 'now', limit: undefined, follow: true })
  })
})

describe('weir tail beside a running weir run', () => {
  it('opens the data dir the run holds, and --follow shows records as the run commits them until Ctrl-C', async () => {
    const dataDir = join(tempDir(), 'data')
    const run = startWeir(['run', FIXTURE, '--data-dir', dataDir, '--param', 'forever=1', '--epoch-ms', '200', '-q'])
    try {
      const topic = 'weir.tailing.route'
      const endsNow = async (): Promise<number[]> => {
        const pipe = await EmbeddedPipe.open(dataDir, { readOnly: true, refreshMs: 0 })
        try {
          return [await pipe.endOffset(topic, 0), await pipe.endOffset(topic, 1)]
        } finally {
          await pipe.close()
        }
      }
      await until(async () => (await endsNow()).every((e) => e > 0), 15_000, 'the run commits records to both partitions')
      const before = await endsNow()
      const follow = startWeir(['tail', FIXTURE, 'route', '--data-dir', dataDir, '--follow', '--json'])
      await waitFor(follow.child.stdout!, /("offset":\d+.*\n.*){6}/, 15_000)
      follow.child.kill('SIGINT')
      const followed = await follow.done
      expect(followed.code, followed.stderr).toBe(0)
      const seen = lines(followed.stdout)
      expect(seen.length).toBeGreaterThanOrEqual(6)
      // What it showed is what the run committed: the same records once the run stopped.
      run.child.kill('SIGINT')
      const ran = await run.done
      expect(ran.code, ran.stderr).toBe(0)
      const committed = new Map((await readTopic(dataDir, topic)).map((r) => [`${r.partition}@${r.offset}`, r]))
      for (const l of seen) expect(brief(committed.get(`${l.partition}@${l.offset}`)!)).toEqual(brief(l))
      // Each partition in offset order, and only what was committed after the tail started.
      for (const p of [0, 1]) {
        const offsets = seen.filter((l) => l.partition === p).map((l) => l.offset)
        expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
        expect(offsets.every((o) => o >= before[p]!)).toBe(true)
      }
    } finally {
      run.child.kill('SIGKILL')
    }
  }, 40_000)
})

describe.skipIf(!kafka.available)('weir tail on Kafka', () => {
  const name = `tail${randomUUID().slice(0, 8)}`
  const kafkaUrl = `kafka://${kafka.url}`
  const client = new Kafka({ brokers: kafka.url.split(','), logLevel: logLevel.NOTHING })
  const tailKafka = (...args: string[]): ReturnType<typeof weir> => weir(['tail', FIXTURE, ...args, '--pipe', kafkaUrl, '--param', `pipeline=${name}`, '--json'])

  /** Every record of a topic a kafkajs consumer sees, up to the topic's current end (watermark marks left out). */
  async function consume(topic: string, readUncommitted: boolean): Promise<Array<{ partition: number; offset: number; key: string | null; value: Buffer | null; timestamp: number }>> {
    const admin = client.admin()
    await admin.connect()
    const ends = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, Number(o.high)]))
    await admin.disconnect()
    const reached = new Map([...ends.keys()].map((p) => [p, 0]))
    const out: Array<{ partition: number; offset: number; key: string | null; value: Buffer | null; timestamp: number }> = []
    const consumer: Consumer = client.consumer({ groupId: `weir-tail-test-${randomUUID()}`, readUncommitted, maxWaitTimeInMs: 100 })
    // Batches of only markers or aborted records reach no handler but this event.
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => { reached.set(e.payload.partition, Math.max(reached.get(e.payload.partition) ?? 0, Number(e.payload.lastOffset) + 1)) })
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        if (message.headers?.[CONTROL_HEADER] !== undefined) return
        out.push({ partition, offset: Number(message.offset), key: message.key?.toString() ?? null, value: message.value, timestamp: Number(message.timestamp) })
      },
    })
    try {
      await until(() => [...ends].every(([p, end]) => (reached.get(p) ?? 0) >= end), 20_000, `a kafkajs consumer reads ${topic} to its end`)
    } finally {
      await consumer.disconnect()
    }
    return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset)
  }

  beforeAll(async () => {
    const pipe = await KafkaPipe.connect({ brokers: kafka.url.split(',') })
    try {
      const run = await startEmbedded(tailing({ pipeline: name, n: '15' }), { dataDir: join(tempDir(), 'data'), pipe, epochIntervalMs: 200 })
      await run.done
    } finally {
      await pipe.close()
    }
  }, 60_000)

  afterAll(async () => {
    const admin = client.admin()
    await admin.connect()
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(`weir.${name}.`))
    if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => undefined)
    await admin.disconnect()
  }, 30_000)

  it('shows exactly the records a read_committed kafkajs consumer reads from the edge', async () => {
    const [tailed, consumed] = await Promise.all([tailKafka('route'), consume(`weir.${name}.route`, false)])
    expect(tailed.code, tailed.stderr).toBe(0)
    const got = lines(tailed.stdout).sort((a, b) => a.partition - b.partition || a.offset - b.offset)
    expect(got.length).toBe(30 - 4) // 15 per source actor, less the 4 the route stage refuses
    expect(got.map(brief)).toEqual(consumed.map((r) => brief({ ...r, value: msgpack.decode(r.value!) })))
  }, 30_000)

  it('shows nothing of an aborted transaction, which a read_uncommitted consumer does see', async () => {
    const topic = `weir.${name}.events`
    const producer = client.producer({ transactionalId: `weir-tail-test-${name}`, maxInFlightRequests: 1, idempotent: true })
    await producer.connect()
    try {
      const aborted = await producer.transaction()
      await aborted.send({ topic, messages: [0, 1, 2].map((i) => ({ partition: 0, key: 'aborted', value: JSON.stringify({ n: 1000 + i }), timestamp: String(BASE_TIME + 1000 + i) })) })
      await aborted.abort()
      const committed = await producer.transaction()
      await committed.send({ topic, messages: [{ partition: 0, key: 'after', value: JSON.stringify({ n: 2000 }), timestamp: String(BASE_TIME) }] })
      await committed.commit()
    } finally {
      await producer.disconnect()
    }
    const [tailed, uncommitted, readCommitted] = await Promise.all([tailKafka('events', '--partition', '0'), consume(topic, true), consume(topic, false)])
    expect(tailed.code, tailed.stderr).toBe(0)
    const keys = lines(tailed.stdout).map((l) => l.key)
    expect(keys).toContain('after')
    expect(keys).not.toContain('aborted')
    expect(keys).toHaveLength(15 + 1)
    // The test can fail: the aborted records are in the topic.
    expect(uncommitted.filter((r) => r.key === 'aborted')).toHaveLength(3)
    expect(readCommitted.filter((r) => r.partition === 0).map((r) => r.key).sort()).toEqual(keys.sort())
  }, 30_000)
})
