/**
 * The Kafka sink writes each record to its target topic once for read_committed readers:
 * across real SIGKILLs at generated points (compared with what a crash-free run writes), and
 * with two instances of one actor open at once (the older one's write is refused by Kafka's
 * fencing and none of it is visible). A record the mapping cannot convert or that is too
 * large is dead-lettered once; bad options are refused at start naming the field. A private
 * target broker stopped and started again under a running pipeline holds the sink back (the
 * monitor shows it waiting for the broker) and loses nothing: every record once after.
 *
 * WEIR_KAFKA_SINK_PROPERTY_RUNS sets the property's number of cases (default 5); WEIR_PROPERTY_SEED replays one.
 */
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Pipeline, SinkFencedError, openPipe, type CheckpointContext, type Context, type LifecycleContext, type Pipe, type StreamRecord } from '../../../index.ts'
import { GeneratorSource, KafkaSink } from '../../../processors/index.ts'
import fc from 'fast-check'
import { readCommittedState, readDeadLetters, readTopic, removeDir, runFileToCompletion, runToCompletion, tempDataDir, type ProcessCrash } from '../../../testing/index.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
import { json, utf8 } from '../../../runtime/codec.ts'
import { actorProgress, progressSubjects } from '../../../runtime/control/progress.ts'
import { NatsBus } from '../../../runtime/control/nats/nats-bus.ts'
import { requireService } from '../../support/services.ts'
import { itRefusesOptions } from '../../support/option-errors.ts'
import { plannedKills, translateKill, type PlannedKill, type RunLeft } from './fixtures/sink-crash-plan.ts'
import { freePort, sleep, startWeir, until } from '../../support/weir-cli.ts'
import { eventCount, kafkaInputs, kafkaPipeline, messageValue, type KafkaInput } from './fixtures/kafka-pipeline.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const RUNS = Number(process.env.WEIR_KAFKA_SINK_PROPERTY_RUNS ?? 5)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'kafka-pipeline.ts')
const EPOCH_MS = 20
const MAX_BATCH = 64
/** The pipeline keys the sink's input into two partitions. */
const SINK_ACTORS = 2
const RUN_ID = randomUUID().slice(0, 8)
/** The case that is always run: paced sources with enough left for a kill from outside to come while they emit. */
const TIMED_INPUT = fc.sample(kafkaInputs(500).filter((i) => i.partitions.length >= 2 && i.partitions.every((p) => p.length >= 100)), { seed: 15, numRuns: 1 })[0]!
/** The sink creates it (compacted) on first use; one for the file, so reads of it stay short. */
const PROGRESS_TOPIC = `weir-test-kafka-sink-progress-${RUN_ID}`
const dirs: string[] = []
const topics: string[] = []
let pipe: Pipe

function tempDir(): string {
  const d = tempDataDir('weir-kafka-sink-')
  dirs.push(d)
  return d
}

async function newTopic(what: string, partitions = 3): Promise<string> {
  const name = `weir-test-kafka-sink-${what}-${randomUUID().slice(0, 8)}`
  await pipe.ensureTopic({ name, partitions })
  topics.push(name)
  return name
}

/** The target topic as a read_committed reader sees it. */
async function readTarget(topic: string): Promise<Array<{ partition: number; key: string | null; value: string }>> {
  return (await readTopic<string>(pipe, topic, utf8)).map((r) => ({ partition: r.partition, key: r.key, value: r.value }))
}

interface StoredProgress {
  generation: number
  positions: Record<string, number>
  checkpoint: number
  deadLetters: unknown[]
}

/** The newest committed progress record of each actor of `pipeline`. */
async function readSinkProgress(pipeline: string): Promise<Map<string, StoredProgress>> {
  const out = new Map<string, StoredProgress>()
  for (const r of await readTopic<StoredProgress>(pipe, PROGRESS_TOPIC, json)) {
    if (r.key?.startsWith(`${pipeline}/`) && !r.key.endsWith('/claim')) out.set(r.key, r.value)
  }
  return out
}

/** What a crash-free run of `input` writes: computed from the input, not by a run. */
function expectedValues(input: KafkaInput): string[] {
  return input.partitions.flatMap((events, source) => events.flatMap((e, index) => (e.poison === true || e.big === true ? [] : [messageValue({ ...e, source, index })]))).sort()
}

function expectedDeadLetters(input: KafkaInput): string[] {
  return input.partitions.flatMap((events, source) => events.flatMap((e, index) => (e.poison === true ? [`${e.account} poison ${source}/${index}`] : e.big === true ? [`${e.account} too large`] : []))).sort()
}

function deadLetterIds(dead: Awaited<ReturnType<typeof readDeadLetters>>): string[] {
  return dead.map((d) => {
    const m = d.value.error.message
    const poison = /event (\d+\/\d+) is poison/.exec(m)
    return `${d.value.key?.toString()} ${poison !== null ? `poison ${poison[1]}` : /above maxMessageBytes/.test(m) ? 'too large' : m}`
  }).sort()
}

/**
 * Each record once (as a multiset, the order of accounts from several sources depends on
 * timing), and each source's events of one account in order within their partition.
 */
function checkTarget(records: Array<{ partition: number; key: string | null; value: string }>, expected: string[], label: string): void {
  expect(records.map((r) => r.value).sort(), label).toEqual(expected)
  const last = new Map<string, number>()
  for (const r of records) {
    const v = JSON.parse(r.value) as { source: number; index: number; account: number }
    expect(r.key, label).toBe(`a${v.account}`)
    const k = `${r.partition}:${r.key}:${v.source}`
    expect(v.index, `${label}: ${k} in order`).toBeGreaterThan(last.get(k) ?? -1)
    last.set(k, v.index)
  }
}

async function measure(pipeline: Pipeline, input: KafkaInput, dataDir: string): Promise<RunLeft> {
  const written = [...(await readSinkProgress(pipeline.name)).values()].reduce((n, p) => n + Object.values(p.positions).reduce((a, b) => a + b, 0), 0)
  const source = await readCommittedState(pipeline, dataDir, 'events').catch(() => ({ actor: {} as Record<number, Record<string, unknown>> }))
  const total = eventCount(input)
  return { total, sinkRemaining: Math.max(0, total - written), sourceRemaining: input.partitions.map((events, p) => events.length - ((source.actor[p]?.next as number | undefined) ?? 0)) }
}

interface CaseStats {
  events: number
  checkpoints: number
  generations: number
  crashes: string[]
  places: number[]
  moved: number
  dead: number
  ms: number
}

function formatCoverage(cases: CaseStats[], ms: number): string {
  const spread = (xs: number[]): string => {
    if (xs.length === 0) return '-'
    const s = [...xs].sort((a, b) => a - b)
    return `min ${s[0]}, median ${s[Math.floor(s.length / 2)]}, max ${s.at(-1)}`
  }
  const byPoint = new Map<string, number>()
  for (const c of cases) for (const p of c.crashes) byPoint.set(p, (byPoint.get(p) ?? 0) + 1)
  const bins = [0, 0, 0, 0]
  for (const p of cases.flatMap((c) => c.places)) bins[Math.min(3, Math.floor(p * 4))]!++
  return [
    `Kafka sink recovery property: ${cases.length} cases in ${(ms / 1000).toFixed(1)} s`,
    `  crashes fired (all planned): ${[...byPoint].map(([p, n]) => `${p} ${n}`).join(', ')}; moved to before-commit: ${cases.reduce((n, c) => n + c.moved, 0)}`,
    `  where the sink-placed crashes landed (share of the case's events written): ${bins.map((n, i) => `${i * 25}-${(i + 1) * 25}% ${n}`).join(', ')}`,
    `  events per case: ${spread(cases.map((c) => c.events))}; sink checkpoints per case (newest actor's): ${spread(cases.map((c) => c.checkpoints))}`,
    `  generations (claims) of the busiest sink actor: ${spread(cases.map((c) => c.generations))}; dead letters: ${cases.reduce((n, c) => n + c.dead, 0)} in ${cases.filter((c) => c.dead > 0).length} cases; ms per case: ${spread(cases.map((c) => c.ms))}`,
  ].join('\n')
}

describe.skipIf(!kafka.available)('Kafka sink', () => {
  beforeAll(async () => {
    pipe = await openPipe(`kafka://${kafka.url}`, { dataDir: tempDir(), log: pino({ level: 'silent' }) })
  })
  afterAll(async () => {
    for (const t of [...topics, PROGRESS_TOPIC]) await pipe.deleteTopic(t).catch(() => undefined)
    await pipe?.close()
    for (const d of dirs) removeDir(d)
  })

  it('writes every record once, in one transaction with the actor\'s progress record; a record too large or that the mapping refuses is dead-lettered', async () => {
    const topic = await newTopic('basic')
    const name = `kafka-basic-${randomUUID().slice(0, 8)}`
    const input: KafkaInput = { partitions: [Array.from({ length: 700 }, (_, i) => ({ account: i % 7, amount: i, ...(i === 300 ? { poison: true as const } : {}), ...(i === 400 ? { big: true as const } : {}) })), Array.from({ length: 300 }, (_, i) => ({ account: i % 5, amount: -i }))] }
    const d = tempDir()
    const pipeline = kafkaPipeline(input, { name, brokers: kafka.url, topic, progressTopic: PROGRESS_TOPIC })
    await runToCompletion(pipeline, { dataDir: d, epochIntervalMs: 20, actorConfig: { maxBatch: 64 } })
    checkTarget(await readTarget(topic), expectedValues(input), 'basic')
    expect(deadLetterIds(await readDeadLetters(pipeline, d, 'sink'))).toEqual(expectedDeadLetters(input))
    const progress = await readSinkProgress(name)
    expect([...progress.keys()].sort()).toEqual([`${name}/sink/0`, `${name}/sink/1`])
    for (const p of progress.values()) {
      expect(p.generation).toBe(1)
      expect(p.checkpoint).toBeGreaterThan(1)
    }
    // Offsets of the keyed input topic (its control records counted): at least one per event.
    const written = [...progress.values()].reduce((n, p) => n + Object.values(p.positions).reduce((a, b) => a + b, 0), 0)
    expect(written).toBeGreaterThanOrEqual(1000)
  })

  it('two instances of one actor: opening the second fences the first, whose write is refused (SinkFencedError) and invisible to read_committed readers; the second writes on', async () => {
    const topic = await newTopic('zombie', 1)
    const pipeline = `kafka-zombie-${randomUUID().slice(0, 8)}`
    const dead: unknown[] = []
    const lifecycle = (): LifecycleContext => ({
      pipeline, stage: 'sink', partition: 0, partitions: 1, log: pino({ level: 'silent' }), sideOutputs: [], workDir: tempDir(),
      deadLetter: (_r: unknown, err: unknown) => dead.push(err), waitingOn: () => undefined,
    }) as unknown as LifecycleContext
    const checkpoint = (ctx: LifecycleContext, n: number): CheckpointContext => ({ ...ctx, checkpoint: n, epoch: n }) as CheckpointContext
    const record = (i: number): StreamRecord<number> => ({ key: `k${i}`, keyBytes: Buffer.from(`k${i}`), value: i, timestamp: i, headers: {}, topic: 'in', partition: 0, offset: i, input: 0 })
    const make = (): KafkaSink<number> => new KafkaSink<number>({ brokers: [kafka.url], topic, progressTopic: PROGRESS_TOPIC, retryDelayMs: 20, maxRetryDelayMs: 200 })
    const first = make()
    const ctx1 = lifecycle()
    await first.open(ctx1)
    for (let i = 0; i < 10; i++) await first.onRecord(record(i), ctx1 as unknown as Context<never>)
    await first.onCheckpoint(checkpoint(ctx1, 1))
    const second = make()
    const ctx2 = lifecycle()
    await second.open(ctx2)
    // The first instance goes on as a zombie would: its next write is refused.
    for (let i = 10; i < 20; i++) await first.onRecord(record(i), ctx1 as unknown as Context<never>)
    await expect(first.onCheckpoint(checkpoint(ctx1, 2))).rejects.toBeInstanceOf(SinkFencedError)
    expect((await readTarget(topic)).map((r) => r.value)).toEqual(Array.from({ length: 10 }, (_, i) => String(i)))
    // The second takes over from the progress the first committed: records 0-9 are passed over.
    for (let i = 0; i < 20; i++) await second.onRecord(record(i), ctx2 as unknown as Context<never>)
    await second.onCheckpoint(checkpoint(ctx2, 2))
    expect((await readTarget(topic)).map((r) => r.value)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)))
    const progress = (await readSinkProgress(pipeline)).get(`${pipeline}/sink/0`)
    expect(progress).toMatchObject({ generation: 2, positions: { in: 20 } })
    expect(dead).toEqual([])
    await first.close()
    await second.close()
  })

  it(`after real SIGKILLs at generated points, read_committed readers of the target topic see what a crash-free run writes: every record once (${RUNS} generated cases)`, async () => {
    const cases: CaseStats[] = []
    const started = Date.now()
    try {
      await fc.assert(
        fc.asyncProperty(kafkaInputs(500), plannedKills, async (input, plans) => {
          const id = randomUUID().slice(0, 8)
          const topic = await newTopic(`prop-${id}`)
          const d = tempDir()
          const inputFile = join(d, 'input.json')
          writeFileSync(inputFile, JSON.stringify(input))
          const name = `kafka-prop-${id}`
          const params = { input: inputFile, name, brokers: kafka.url, topic, progressTopic: PROGRESS_TOPIC }
          const pipeline = kafkaPipeline(input, { name, brokers: kafka.url, topic, progressTopic: PROGRESS_TOPIC })
          const dataDir = join(d, 'run')
          const places: number[] = []
          let moved = 0
          const planner = (plan: PlannedKill) => async (): Promise<ProcessCrash> => {
            const t = translateKill(plan, await measure(pipeline, input, dataDir), MAX_BATCH, SINK_ACTORS)
            if (t.place !== undefined) places.push(t.place)
            if (t.moved) moved++
            return t.crash
          }
          const crashStart = Date.now()
          const r = await runFileToCompletion(FIXTURE, { dataDir, params, crashes: plans.map(planner), epochIntervalMs: EPOCH_MS, env: { WEIR_MAX_BATCH: String(MAX_BATCH) }, timeoutMs: 90_000 })
          const label = `${JSON.stringify(plans)} → ${JSON.stringify(r.planned)}`
          expect(r.crashed, `${label}: every planned crash must fire`).toEqual(r.planned)
          checkTarget(await readTarget(topic), expectedValues(input), label)
          const deadRun = deadLetterIds(await readDeadLetters(pipeline, dataDir, 'sink'))
          expect(deadRun, `${label}: dead letters`).toEqual(expectedDeadLetters(input))
          const progress = [...(await readSinkProgress(name)).values()]
          cases.push({ events: eventCount(input), checkpoints: Math.max(0, ...progress.map((p) => p.checkpoint)), generations: Math.max(0, ...progress.map((p) => p.generation)), crashes: r.planned.map((c) => (c.kind === 'timer' ? 'timer' : c.spec.point)), places, moved, dead: deadRun.length, ms: Date.now() - crashStart })
          await pipe.deleteTopic(topic).catch(() => undefined)
          removeDir(d)
        }),
        // A kill from outside is a quarter of the plans, and one moves to a point when its
        // run has too little left to pace: a few cases may draw none, so one is always run.
        { numRuns: RUNS, seed: SEED, verbose: 1, endOnFailure: true, examples: [[TIMED_INPUT, [{ point: 'timer', at: 0.4 }, { point: 'before-commit', at: 0.5 }]]] },
      )
    } finally {
      console.log(formatCoverage(cases, Date.now() - started))
    }
    expect(cases.filter((c) => c.crashes.includes('timer')).length, 'some cases are killed from outside').toBeGreaterThan(0)
    expect(cases.filter((c) => c.checkpoints >= 3).length, 'most cases span several checkpoints').toBeGreaterThan(RUNS / 2)
  }, Math.max(300_000, RUNS * 30_000))

  describe('options are checked at start, naming the field', () => {
    const base = { brokers: ['127.0.0.1:9092'], topic: 'out' }
    const cases: Array<[string, () => unknown, string]> = [
      ['no brokers', () => new KafkaSink({ ...base, brokers: [] }), 'brokers'],
      ['a broker without a port', () => new KafkaSink({ ...base, brokers: ['kafka.example.com'] }), 'brokers'],
      ['a topic name Kafka refuses', () => new KafkaSink({ ...base, topic: 'has space' }), 'topic'],
      ['the progress topic being the target', () => new KafkaSink({ ...base, progressTopic: 'out' }), 'progressTopic'],
      ['a transactional id prefix with a slash', () => new KafkaSink({ ...base, transactionalIdPrefix: 'a/b' }), 'transactionalIdPrefix'],
      ['a mapping that is not a function', () => new KafkaSink({ ...base, mapping: 'json' as never }), 'mapping'],
      ['a codec kafkajs lacks', () => new KafkaSink({ ...base, compression: 'zstd' as never }), 'compression'],
      ['maxMessageBytes 0', () => new KafkaSink({ ...base, maxMessageBytes: 0 }), 'maxMessageBytes'],
      ['a transaction timeout of 10 ms', () => new KafkaSink({ ...base, transactionTimeoutMs: 10 }), 'transactionTimeoutMs'],
      ['batchRows 0', () => new KafkaSink({ ...base, batchRows: 0 }), 'batchRows'],
      ['a CA file that is not there', () => new KafkaSink({ ...base, ssl: { caFile: '/nonexistent/ca.pem' } }), 'ssl.caFile'],
      ['an unknown SASL mechanism', () => new KafkaSink({ ...base, sasl: { mechanism: 'gssapi' as never, username: 'u', passwordEnv: 'HOME' } }), 'sasl.mechanism'],
      ['a SASL password inline', () => new KafkaSink({ ...base, sasl: { mechanism: 'plain', username: 'u', password: 'secret' } as never }), 'sasl.password'],
      ['an unset SASL password variable', () => new KafkaSink({ ...base, sasl: { mechanism: 'plain', username: 'u', passwordEnv: 'WEIR_TEST_NO_SUCH_VARIABLE' } }), 'sasl.passwordEnv'],
      ['a SASL password file that is not there', () => new KafkaSink({ ...base, sasl: { mechanism: 'plain', username: 'u', passwordFile: '/nonexistent/pw' } }), 'sasl.passwordFile'],
    ]
    itRefusesOptions(cases)

    it('a pipeline with a bad option fails at start with the field named', async () => {
      const p = new Pipeline('kafka-sink-bad-option')
      p.source<number>('n', () => new GeneratorSource<number>({ count: 10, generate: (i) => ({ key: `k${i}`, value: i }) }))
        .to('sink', () => new KafkaSink<number>({ brokers: [kafka.url], topic: 'no such topic' }))
      await expect(startEmbedded(p, { dataDir: tempDir() }).then((run) => run.done)).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', context: { field: 'topic' } })
    })

    it('a target topic that does not exist stops the sink with an error naming it', async () => {
      const p = new Pipeline(`kafka-sink-no-topic-${randomUUID().slice(0, 8)}`)
      const missing = `weir-test-kafka-sink-missing-${randomUUID().slice(0, 8)}`
      p.source<number>('n', () => new GeneratorSource<number>({ count: 10, generate: (i) => ({ key: `k${i}`, value: i }) }))
        .to('sink', () => new KafkaSink<number>({ brokers: [kafka.url], topic: missing, progressTopic: PROGRESS_TOPIC }))
      await expect(startEmbedded(p, { dataDir: tempDir() }).then((run) => run.done)).rejects.toThrow(new RegExp(`target topic ${missing} does not exist`))
    })
  })
})

const SERVICES = join(import.meta.dirname, '..', '..', '..', 'scripts', 'services.sh')
const exec = promisify(execFile)

interface MonitorOutput { output: string; holdingBack: { stage: string; reason: string } | null }

/**
 * The target cluster is a broker of the test's own (scripts/services.sh on other ports with its
 * own data dir, as test/e2e/monitor-kafka-outage.test.ts does), so stopping it disturbs no other
 * test; the pipeline runs on the embedded pipe with the shared NATS as its bus.
 */
describe.skipIf(!kafka.available || !nats.available)('Kafka sink while its target broker restarts', () => {
  const servicesDir = tempDataDir('weir-kafka-sink-outage-services-')
  const made: string[] = []
  const ownDir = (): string => {
    const d = tempDataDir('weir-kafka-sink-outage-')
    made.push(d)
    return d
  }
  let broker = ''
  let env: NodeJS.ProcessEnv = {}
  const services = (cmd: 'up' | 'stop' | 'down'): Promise<unknown> => exec('bash', [SERVICES, cmd, ...(cmd === 'down' ? [] : ['kafka'])], { env, timeout: 180_000 })
  let pipeDir = ''

  beforeAll(async () => {
    broker = `127.0.0.1:${await freePort()}`
    env = { ...process.env, WEIR_SERVICES_DIR: servicesDir, WEIR_KAFKA_BROKERS: broker, WEIR_KAFKA_CONTROLLER_PORT: String(await freePort()) }
    pipeDir = ownDir()
    await services('up')
  }, 180_000)
  afterAll(async () => {
    // Stops only what services.sh started in servicesDir (the shared services are left alone).
    await services('down').catch(() => undefined)
    for (const d of [servicesDir, ...made]) removeDir(d)
  }, 120_000)

  /** A pipe on the private broker, for one use: closed before the broker stops. */
  async function onBroker<T>(use: (p: Pipe) => Promise<T>): Promise<T> {
    const p = await openPipe(`kafka://${broker}`, { dataDir: pipeDir, log: pino({ level: 'silent' }) })
    try {
      return await use(p)
    } finally {
      await p.close()
    }
  }

  it('holds the sink back while the broker is down (the monitor shows it waiting for Kafka), then writes every record once for read_committed readers; the dead letters exact', async () => {
    const id = randomUUID().slice(0, 8)
    const topic = `weir-test-kafka-sink-outage-${id}`
    const progressTopic = `weir-test-kafka-sink-outage-progress-${id}`
    await onBroker((p) => p.ensureTopic({ name: topic, partitions: 3 }))
    // Paced input for ~15 s: the broker goes down in the middle of it; a few poison and too-large events.
    const input: KafkaInput = { partitions: [0, 1].map((p) => Array.from({ length: 2400 }, (_, i) => ({
      account: (i * 7 + p) % 12, amount: i - 300, ...(i % 311 === 150 ? { poison: true as const } : {}), ...(i % 457 === 400 ? { big: true as const } : {}),
    }))) }
    const dir = ownDir()
    const inputFile = join(dir, 'input.json')
    writeFileSync(inputFile, JSON.stringify(input))
    const cluster = `k${id}`
    const name = `kafka-outage-${id}`
    const dataDir = join(dir, 'data')
    // What the sink actors publish on NATS: their committed checkpoints, and what they wait for.
    const sinkEpochs = new Map<string, number>()
    const sinkRecords = new Map<string, number>()
    const waiting: string[] = []
    const observer = await NatsBus.connect({ servers: [nats.url], name: 'kafka-sink-outage-test' })
    observer.subscribe(progressSubjects.progress(cluster, name), (m) => {
      const p = actorProgress.safeParse(m)
      if (!p.success || p.data.stage !== 'sink') return
      sinkEpochs.set(p.data.actor, p.data.lastEpoch)
      sinkRecords.set(p.data.actor, p.data.recordsIn)
      if (p.data.waiting !== undefined) waiting.push(`${p.data.actor} waits for ${p.data.waiting.on}: ${p.data.waiting.message}`)
    })
    const monitor = startWeir(['monitor', '--bus', nats.url, '--cluster', cluster, '--port', '0'])
    const run = startWeir(['run', FIXTURE, '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '200', '--data-dir', dataDir,
      '--param', `input=${inputFile}`, '--param', `name=${name}`, '--param', `brokers=${broker}`, '--param', `topic=${topic}`,
      '--param', `progressTopic=${progressTopic}`, '--param', 'rate=160', '-q'])
    let stopped = false
    try {
      let stdout = ''
      monitor.child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
      const url = await until(async () => /dashboard (http:\/\/\S+?)\/? /.exec(stdout)?.[1]?.replace(/\/$/, ''), 30_000, 'monitor URL')
      const holdingBack = async (): Promise<MonitorOutput['holdingBack'] | undefined> => {
        const res = await fetch(`${url}/api/status`, { signal: AbortSignal.timeout(5000) })
        const status = (await res.json()) as { pipelines: Array<{ pipeline: string; outputs: MonitorOutput[] }> }
        return status.pipelines.find((p) => p.pipeline === name)?.outputs.find((o) => o.output === 'sink')?.holdingBack ?? undefined
      }
      // Both sink actors committed a few writes to the broker before it stops.
      await until(() => (sinkEpochs.size === 2 && [...sinkEpochs.values()].every((e) => e >= 3) && [...sinkRecords.values()].reduce((a, b) => a + b, 0) > 300 ? true : undefined), 60_000, 'the sink wrote to the private broker')
      const before = `epochs ${JSON.stringify(Object.fromEntries(sinkEpochs))}, records in ${JSON.stringify(Object.fromEntries(sinkRecords))}`
      stopped = true
      await services('stop')
      const downAt = Date.now()
      // A sink that does not wait for the broker stops the run: that fails the test at once.
      const ended = run.done.then((o): never => {
        throw new Error(`the run ended (code ${o.code}) while the broker was down, instead of waiting for it: ${o.stderr.slice(-2000)}`)
      })
      ended.catch(() => undefined)
      const held = await Promise.race([until(async () => {
        const h = await holdingBack()
        return h?.reason.includes(`waits for Kafka ${broker} topic ${topic}`) === true ? h : undefined
      }, 60_000, 'the monitor shows the sink waiting for the broker'), ended])
      expect(held.stage).toBe('sink')
      // Down a while longer: the sink keeps retrying, nothing is dropped.
      await sleep(Math.max(0, 3000 - (Date.now() - downAt)))
      console.log(`kafka sink outage: sink before the stop: ${before}; the monitor said: ${held.reason}`)
      await services('up')
      stopped = false
      const outcome = await run.done
      expect(outcome.code, outcome.stderr.slice(-3000)).toBe(0)
      expect(waiting.some((w) => w.includes(`Kafka ${broker} topic ${topic}`)), 'progress events on NATS carried the wait').toBe(true)
      const records = await onBroker(async (p) => (await readTopic<string>(p, topic, utf8)).map((r) => ({ partition: r.partition, key: r.key, value: r.value })))
      checkTarget(records, expectedValues(input), 'after the outage')
      const pipeline = kafkaPipeline(input, { name, brokers: broker, topic, progressTopic })
      expect(deadLetterIds(await readDeadLetters(pipeline, dataDir, 'sink'))).toEqual(expectedDeadLetters(input))
    } finally {
      if (stopped) await services('up').catch(() => undefined)
      run.child.kill('SIGKILL')
      monitor.child.kill('SIGKILL')
      await Promise.all([run.done, monitor.done])
      await observer.close()
    }
  }, 240_000)
})
