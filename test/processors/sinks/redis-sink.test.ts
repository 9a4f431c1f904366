/**
 * The Redis sink applies each record's commands once: appends (XADD, INCRBY) included, across
 * real SIGKILLs at generated points (compared with a crash-free run), across a restart of
 * Redis itself in the middle of a run (the monitor shows the sink holding the output back),
 * with two instances of one actor (the older one's write refused by the generation), and
 * with a zombie worker on a real cluster (fenced, nothing of it applied). A command Redis
 * refuses dead-letters its record alone; bad options are refused at start naming the field.
 *
 * WEIR_REDIS_PROPERTY_RUNS sets the property's number of cases (default 5); WEIR_PROPERTY_SEED replays one.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, onTestFailed, onTestFinished } from 'vitest'
import pino from 'pino'
import { Pipeline, SinkFencedError, type LifecycleContext, type SinkBatch, type StreamRecord } from '../../../index.ts'
import { GeneratorSource, RedisSink, type RedisCommand } from '../../../processors/index.ts'
import fc from 'fast-check'
import { readCommittedState, readDeadLetters, removeDir, runFileToCompletion, runToCompletion, tempDataDir, type DeadLetter, type ProcessCrash, type ReadRecord } from '../../../testing/index.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
import { actorProgress, progressSubjects } from '../../../runtime/control/progress.ts'
import { NatsBus } from '../../../runtime/control/nats/nats-bus.ts'
import { assignmentMessage, type AssignmentMessage } from '../../../runtime/control/messages.ts'
import { TestCluster } from '../../support/cluster.ts'
import { requireService } from '../../support/services.ts'
import { itRefusesOptions } from '../../support/option-errors.ts'
import { plannedKills, translateKill, type PlannedKill, type RunLeft } from './fixtures/sink-crash-plan.ts'
import { freePort, sleep, startWeir, tempDirs, until } from '../../support/weir-cli.ts'
import { eventCount, readProgress, readRedis, redisInputs, redisPipeline, removeKeys, type RedisInput } from './fixtures/redis-pipeline.ts'

const redis = await requireService('redis')
const nats = await requireService('nats')
const kafka = await requireService('kafka')
const RUNS = Number(process.env.WEIR_REDIS_PROPERTY_RUNS ?? 5)
/** The case that is always run: paced sources with enough left for a kill from outside to come while they emit. */
const TIMED_INPUT = fc.sample(redisInputs(600).filter((i) => i.partitions.length >= 2 && i.partitions.every((p) => p.length >= 100)), { seed: 15, numRuns: 1 })[0]!
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'redis-pipeline.ts')
const EPOCH_MS = 20
const MAX_BATCH = 64
/** The pipeline keys the sink's input into two partitions. */
const SINK_ACTORS = 2
const dirs: string[] = []
let client: Redis
const prefixes: string[] = []

function newPrefix(what: string): string {
  const prefix = `weir:test:redis-sink:${what}:${randomUUID().slice(0, 8)}`
  prefixes.push(prefix)
  return prefix
}

function tempDir(): string {
  const d = tempDataDir('weir-redis-sink-')
  dirs.push(d)
  return d
}

/** Streams compared as multisets: the order of one account's events from several source partitions depends on timing. */
function normalized(content: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(content).map(([k, v]) => [k, Array.isArray(v) ? [...(v as string[])].sort() : v]))
}

/** What a crash-free run of `input` must leave: computed here, not by a run. */
function expectedContent(input: RedisInput): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  input.partitions.forEach((events, source) => events.forEach((e, index) => {
    if (e.poison === true) return
    ;((out[`events:${e.account}`] ??= []) as string[]).push(`source ${source} index ${index} amount ${e.amount}`)
    out[`total:${e.account}`] = String(Number(out[`total:${e.account}`] ?? 0) + e.amount)
    ;((out[`latest:${e.account}`] ??= {}) as Record<string, string>)[`p${source}`] = String(index)
  }))
  return normalized(out)
}

async function measure(pipeline: Pipeline, input: RedisInput, dataDir: string, prefix: string): Promise<RunLeft> {
  const written = (await readProgress(client, prefix)).reduce((n, p) => n + Object.values(JSON.parse(p.positions ?? '{}') as Record<string, number>).reduce((a, b) => a + b, 0), 0)
  const source = await readCommittedState(pipeline, dataDir, 'events').catch(() => ({ actor: {} as Record<number, Record<string, unknown>> }))
  const total = eventCount(input)
  return { total, sinkRemaining: Math.max(0, total - written), sourceRemaining: input.partitions.map((events, p) => events.length - ((source.actor[p]?.next as number | undefined) ?? 0)) }
}

/** A dead letter, as both runs must have it: the record's bytes and the error (keys named without the run's prefix). */
function deadLetterId(d: ReadRecord<DeadLetter>): string {
  return `${d.value.value?.toString('base64')} ${d.value.error.code} ${d.value.error.message.replace(/weir:test:redis-sink:(ref|run)-[0-9a-f]{8}:[0-9a-f]{8}:/g, '')}`
}

interface CaseStats {
  events: number
  checkpoints: number
  generations: number
  crashes: string[]
  places: number[]
  moved: string[]
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
  const places = cases.flatMap((c) => c.places)
  const bins = [0, 0, 0, 0]
  for (const p of places) bins[Math.min(3, Math.floor(p * 4))]!++
  return [
    `Redis sink recovery property: ${cases.length} cases in ${(ms / 1000).toFixed(1)} s`,
    `  crashes fired (all planned): ${[...byPoint].map(([p, n]) => `${p} ${n}`).join(', ')}; moved to before-commit: ${cases.reduce((n, c) => n + c.moved.length, 0)}`,
    `  where the sink-placed crashes landed (share of the case's events written): ${bins.map((n, i) => `${i * 25}-${(i + 1) * 25}% ${n}`).join(', ')}`,
    `  events per case: ${spread(cases.map((c) => c.events))}; sink checkpoints per case (newest actor's): ${spread(cases.map((c) => c.checkpoints))}`,
    `  generations (claims) of the busiest sink actor: ${spread(cases.map((c) => c.generations))}; dead letters: ${cases.reduce((n, c) => n + c.dead, 0)} in ${cases.filter((c) => c.dead > 0).length} cases`,
  ].join('\n')
}

describe.skipIf(!redis.available)('Redis sink', () => {
  beforeAll(() => {
    client = new Redis(redis.url)
  })
  afterAll(async () => {
    for (const p of prefixes) await removeKeys(client, p)
    client.disconnect()
  })

  it('applies every record\'s commands once, and keeps its progress in a hash per actor', async () => {
    const prefix = newPrefix('basic')
    const input: RedisInput = { partitions: [Array.from({ length: 700 }, (_, i) => ({ account: i % 7, amount: i })), Array.from({ length: 300 }, (_, i) => ({ account: i % 5, amount: -i }))] }
    const d = tempDir()
    await runToCompletion(redisPipeline(input, { name: `redis-basic-${prefix.slice(-8)}`, url: redis.url, prefix }), { dataDir: d, epochIntervalMs: 20, actorConfig: { maxBatch: 64 } })
    expect(normalized(await readRedis(client, prefix))).toEqual(expectedContent(input))
    const progress = await readProgress(client, prefix)
    expect(progress).toHaveLength(2)
    for (const p of progress) {
      expect(p.generation).toBe('1')
      expect(Number(p.checkpoint)).toBeGreaterThan(1)
      expect(p.deadLetters).toBe('[]')
    }
  })

  it('two instances of one actor: the newer one\'s claim fences the older, whose write is refused (SinkFencedError) and applies no command; the newer writes on', async () => {
    const prefix = newPrefix('fence')
    const make = (): RedisSink<number> => new RedisSink<number>({ url: redis.url, keyPrefix: `${prefix}:`, progressPrefix: `${prefix}:progress`, commands: (r) => ({ op: 'incrby', key: 'total', by: r.value }) })
    const ctx: LifecycleContext = { pipeline: 'fence', stage: 'sink', partition: 0, partitions: 1, log: pino({ level: 'silent' }), sideOutputs: [], workDir: tempDir(), deadLetter: () => undefined, waitingOn: () => undefined, reportStats: () => undefined, wake: () => undefined }
    const older = make()
    const newer = make()
    const write = (sink: RedisSink<number>, generation: number, by: number): Promise<unknown> => {
      const s = sink as unknown as { toRow(r: StreamRecord<number>): unknown; write(b: SinkBatch<unknown>): Promise<unknown> }
      return s.write({
        actor: { pipeline: 'fence', stage: 'sink', partition: 0 }, generation, checkpoint: 1, epoch: 1, from: {}, to: { 'fence.numbers': 1 },
        rows: [{ row: s.toRow({ key: 'k', value: by, partition: 0, offset: 0, timestamp: 0 } as StreamRecord<number>), record: {} as never }],
        progress: () => ({ generation, positions: { 'fence.numbers': 1 }, checkpoint: 1, epoch: 1, deadLetters: [] }),
      })
    }
    try {
      await older.open(ctx)
      await newer.open(ctx)
      const refused = write(older, 1, 5)
      await expect(refused).rejects.toBeInstanceOf(SinkFencedError)
      await expect(refused).rejects.toThrow(/generation 1.*generation 2/)
      expect(await client.get(`${prefix}:total`)).toBeNull()
      await expect(write(newer, 2, 7)).resolves.toMatchObject({ outcome: 'written' })
      expect(await client.get(`${prefix}:total`)).toBe('7')
    } finally {
      await older.close()
      await newer.close()
    }
  })

  it('a command Redis refuses (INCRBY of a non-integer, HSET of a string key) dead-letters its record alone, with Redis\'s error; every other command is applied once', async () => {
    const prefix = newPrefix('poison')
    await client.set(`${prefix}:word`, 'text')
    const d = tempDir()
    const pipeline = (): Pipeline => {
      const p = new Pipeline(`redis-poison-${prefix.slice(-8)}`)
      p.source<number>('n', () => new GeneratorSource<number>({ count: 300, generate: (i) => ({ key: `k${i}`, value: i }) }))
        .to('sink', () => new RedisSink<number>({
          url: redis.url, keyPrefix: `${prefix}:`, progressPrefix: `${prefix}:progress`, batchRows: 40,
          commands: (r): RedisCommand[] => {
            const i = r.value
            // Record 100: INCRBY of a key holding text, after an XADD of the same record (undone).
            if (i === 100) return [{ op: 'xadd', stream: 'log', fields: { i } }, { op: 'incrby', key: 'word', by: 1 }]
            // Record 200: HSET of a string key.
            if (i === 200) return [{ op: 'hset', key: 'word', fields: { f: i } }]
            return [{ op: 'xadd', stream: 'log', fields: { i } }, { op: 'incrby', key: 'sum', by: i }, { op: 'set', key: `v:${i % 3}`, value: i }]
          },
        }))
      return p
    }
    await runToCompletion(pipeline(), { dataDir: d, epochIntervalMs: 20, actorConfig: { maxBatch: 32 } })
    const content = await readRedis(client, prefix)
    const kept = Array.from({ length: 300 }, (_, i) => i).filter((i) => i !== 100 && i !== 200)
    expect(content.log).toEqual(kept.map((i) => `i ${i}`))
    expect(content.sum).toBe(String(kept.reduce((a, b) => a + b, 0)))
    expect(content.word).toBe('text')
    expect([content['v:0'], content['v:1'], content['v:2']]).toEqual(['297', '298', '299'])
    const dead = await readDeadLetters(pipeline(), d, 'sink')
    expect(dead.map((x) => x.value.key?.toString())).toEqual(['k100', 'k200'])
    expect(dead[0]!.value.error.code).toBe('WEIR_PROCESSING_FAILED')
    expect(dead[0]!.value.error.message).toMatch(/^Redis refused INCRBY .*:word: ERR value is not an integer/)
    expect(dead[0]!.value.detail).toMatchObject({ op: 'incrby', command: 1, redisError: expect.stringMatching(/not an integer/) })
    expect(dead[1]!.value.error.message).toMatch(/^Redis refused HSET .*:word: WRONGTYPE/)
  })

  it(`after real SIGKILLs at generated points, Redis holds what a crash-free run wrote: every XADD and INCRBY once (${RUNS} generated cases)`, async () => {
    const cases: CaseStats[] = []
    const started = Date.now()
    try {
      await fc.assert(
        fc.asyncProperty(redisInputs(600), plannedKills, async (input, plans) => {
          const id = randomUUID().slice(0, 8)
          const refPrefix = newPrefix(`ref-${id}`)
          const runPrefix = newPrefix(`run-${id}`)
          const d = tempDir()
          const inputFile = join(d, 'input.json')
          writeFileSync(inputFile, JSON.stringify(input))
          const name = `redis-prop-${id}`
          const ref = redisPipeline(input, { name, url: redis.url, prefix: refPrefix })
          await runToCompletion(ref, { dataDir: join(d, 'ref'), epochIntervalMs: EPOCH_MS, actorConfig: { maxBatch: MAX_BATCH } })
          const expected = await readRedis(client, refPrefix)
          expect(normalized(expected), 'the crash-free run wrote what the input says').toEqual(expectedContent(input))
          const pipeline = redisPipeline(input, { name, url: redis.url, prefix: runPrefix })
          const dataDir = join(d, 'run')
          const places: number[] = []
          const moved: string[] = []
          const planner = (plan: PlannedKill) => async (): Promise<ProcessCrash> => {
            const t = translateKill(plan, await measure(pipeline, input, dataDir, runPrefix), MAX_BATCH, SINK_ACTORS)
            if (t.place !== undefined) places.push(t.place)
            if (t.moved) moved.push(plan.point)
            return t.crash
          }
          const crashStart = Date.now()
          const r = await runFileToCompletion(FIXTURE, { dataDir, params: { input: inputFile, name, url: redis.url, prefix: runPrefix }, crashes: plans.map(planner), epochIntervalMs: EPOCH_MS, env: { WEIR_MAX_BATCH: String(MAX_BATCH) }, timeoutMs: 90_000 })
          const label = `${JSON.stringify(plans)} → ${JSON.stringify(r.planned)}`
          expect(r.crashed, `${label}: every planned crash must fire`).toEqual(r.planned)
          expect(normalized(await readRedis(client, runPrefix)), label).toEqual(normalized(expected))
          const deadRef = (await readDeadLetters(ref, join(d, 'ref'), 'sink')).map(deadLetterId).sort()
          const deadRun = (await readDeadLetters(pipeline, dataDir, 'sink')).map(deadLetterId).sort()
          expect(deadRun, `${label}: dead letters`).toEqual(deadRef)
          expect(deadRef).toHaveLength(input.partitions.flat().filter((e) => e.poison === true).length)
          const progress = await readProgress(client, runPrefix)
          cases.push({ events: eventCount(input), checkpoints: Math.max(0, ...progress.map((p) => Number(p.checkpoint ?? 0))), generations: Math.max(0, ...progress.map((p) => Number(p.generation))), crashes: r.planned.map((c) => (c.kind === 'timer' ? 'timer' : c.spec.point)), places, moved, dead: deadRun.length, ms: Date.now() - crashStart })
          await removeKeys(client, refPrefix)
          await removeKeys(client, runPrefix)
          removeDir(d)
        }),
        // A kill from outside is a quarter of the plans, and one moves to a point when its
        // run has too little left to pace: a few cases may draw none, so one is always run.
        { numRuns: RUNS, seed: SEED, verbose: 1, endOnFailure: true, examples: [[TIMED_INPUT, [{ point: 'timer', at: 0.4 }, { point: 'before-commit', at: 0.5 }]]] },
      )
    } finally {
      console.log(formatCoverage(cases, Date.now() - started))
    }
    // A timed kill planned after the sources emitted everything becomes a before-commit crash (moved): count the planned ones.
    expect(cases.filter((c) => c.crashes.includes('timer') || c.moved.includes('timer')).length, 'some cases plan a kill from outside').toBeGreaterThan(0)
    expect(cases.filter((c) => c.checkpoints >= 3).length, 'most cases span several checkpoints').toBeGreaterThan(RUNS / 2)
  }, Math.max(300_000, RUNS * 30_000))

  describe('options are checked at start, naming the field', () => {
    const commands = (): RedisCommand[] => []
    const cases: Array<[string, () => unknown, string]> = [
      ['url and urlEnv both missing', () => new RedisSink({ commands }), 'url'],
      ['a password in the url', () => new RedisSink({ url: 'redis://:secret@127.0.0.1:6379', commands }), 'url'],
      ['a url that is not redis://', () => new RedisSink({ url: 'http://127.0.0.1:6379', commands }), 'url'],
      ['a database that is not a number', () => new RedisSink({ url: 'redis://127.0.0.1:6379/x', commands }), 'url'],
      ['an unset url variable', () => new RedisSink({ urlEnv: 'WEIR_TEST_NO_SUCH_VARIABLE', commands }), 'urlEnv'],
      ['an unset password variable', () => new RedisSink({ url: redis.url, passwordEnv: 'WEIR_TEST_NO_SUCH_VARIABLE', commands }), 'passwordEnv'],
      ['a password file that is not there', () => new RedisSink({ url: redis.url, passwordFile: '/nonexistent/redis-password', commands }), 'passwordFile'],
      ['a CA file that is not there', () => new RedisSink({ url: redis.url, tls: { caFile: '/nonexistent/ca.pem' }, commands }), 'tls.caFile'],
      ['no commands mapping', () => new RedisSink({ url: redis.url } as never), 'commands'],
      ['an empty progress prefix', () => new RedisSink({ url: redis.url, progressPrefix: '', commands }), 'progressPrefix'],
      ['batchRows 0', () => new RedisSink({ url: redis.url, batchRows: 0, commands }), 'batchRows'],
      ['a command timeout of 0', () => new RedisSink({ url: redis.url, commandTimeoutMs: 0, commands }), 'commandTimeoutMs'],
    ]
    itRefusesOptions(cases)

    it('a pipeline with a bad option fails at start with the field named', async () => {
      const p = new Pipeline('redis-bad-option')
      p.source<number>('n', () => new GeneratorSource<number>({ count: 10, generate: (i) => ({ key: `k${i}`, value: i }) }))
        .to('sink', () => new RedisSink<number>({ url: 'redis://:pw@127.0.0.1:6379', commands }))
      await expect(startEmbedded(p, { dataDir: tempDir() }).then((run) => run.done)).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', context: { field: 'url' } })
    })
  })
})

/** A Redis of the test's own, durable (appendonly, fsync at every write), that the test kills and starts again on the same files. */
class PrivateRedis {
  private child: ChildProcess | undefined
  constructor(readonly port: number, readonly dir: string) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: 'ignore' })
    this.child = child
    await until(async () => {
      const c = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
      c.on('error', () => undefined)
      try {
        await c.connect()
        return (await c.ping()) === 'PONG'
      } catch {
        return undefined
      } finally {
        c.disconnect()
      }
    }, 30_000, `redis-server on port ${this.port}`)
  }

  /** A crash of Redis: SIGKILL, nothing flushed beyond what appendfsync always already wrote. */
  async kill(): Promise<void> {
    const child = this.child
    this.child = undefined
    if (child === undefined || child.exitCode !== null) return
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGKILL')
    await exited
  }
}

describe.skipIf(!redis.available || !nats.available)('Redis sink while Redis restarts', () => {
  const tempDirOf = tempDirs('weir-redis-restart-')

  it('holds the output back while Redis is down (the monitor shows the sink waiting for it), then writes every command once', async () => {
    const dir = tempDirOf()
    mkdirSync(join(dir, 'redis'))
    const store = new PrivateRedis(await freePort(), join(dir, 'redis'))
    await store.start()
    onTestFinished(() => store.kill())
    const storeClient = new Redis(store.url, { lazyConnect: true })
    storeClient.on('error', () => undefined)
    onTestFinished(() => storeClient.disconnect())
    await storeClient.connect()
    // Several seconds of paced input: Redis goes down in the middle of it.
    const input: RedisInput = { partitions: [0, 1].map((p) => Array.from({ length: 1500 }, (_, i) => (i % 97 === 50 ? { account: (i + p) % 12, amount: 1, poison: true as const } : { account: (i * 7 + p) % 12, amount: i - 300 }))) }
    const inputFile = join(dir, 'input.json')
    writeFileSync(inputFile, JSON.stringify(input))
    const cluster = `r${randomUUID().slice(0, 8)}`
    const name = `redis-restart-${cluster}`
    const prefix = `weir:test:redis-restart:${cluster}`
    const waiting: string[] = []
    const observer = await NatsBus.connect({ servers: [nats.url], name: 'redis-restart-test' })
    onTestFinished(() => observer.close())
    observer.subscribe(progressSubjects.progress(cluster, name), (m) => {
      const p = actorProgress.safeParse(m)
      if (p.success && p.data.waiting !== undefined) waiting.push(`${p.data.actor} waits for ${p.data.waiting.on}: ${p.data.waiting.message}`)
    })
    const monitor = startWeir(['monitor', '--bus', nats.url, '--cluster', cluster, '--port', '0'])
    const run = startWeir(['run', FIXTURE, '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '200', '--data-dir', join(dir, 'data'),
      '--param', `input=${inputFile}`, '--param', `name=${name}`, '--param', `url=${store.url}`, '--param', `prefix=${prefix}`, '--param', 'rate=150', '-q'])
    onTestFinished(async () => {
      run.child.kill('SIGKILL')
      monitor.child.kill('SIGKILL')
      await Promise.all([run.done, monitor.done])
    })
    let stdout = ''
    monitor.child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    const url = await until(async () => /dashboard (http:\/\/\S+?)\/? /.exec(stdout)?.[1]?.replace(/\/$/, ''), 20_000, 'monitor URL')
    const holdingBack = async (): Promise<string | undefined> => {
      const res = await fetch(`${url}/api/status`, { signal: AbortSignal.timeout(5000) })
      const status = (await res.json()) as { pipelines: Array<{ pipeline: string; outputs: Array<{ output: string; holdingBack: { stage: string; reason: string } | null }> }> }
      return status.pipelines.find((p) => p.pipeline === name)?.outputs.find((o) => o.output === 'sink')?.holdingBack?.reason
    }
    const written = async (): Promise<number> => {
      const hashes = await readProgress(storeClient, prefix)
      return hashes.reduce((n, h) => n + Object.values(JSON.parse(h.positions ?? '{}') as Record<string, number>).reduce((a, b) => a + b, 0), 0)
    }
    await until(async () => ((await written()) > 200 ? true : undefined), 60_000, 'the sink wrote to Redis')
    await store.kill()
    const downAt = Date.now()
    const reason = await until(async () => {
      const r = await holdingBack()
      return r?.includes(`waits for Redis 127.0.0.1:${store.port}`) ? r : undefined
    }, 30_000, 'the monitor shows the sink waiting for Redis')
    // Down a while longer: the sink keeps retrying, nothing is dropped.
    await sleep(Math.max(0, 3000 - (Date.now() - downAt)))
    await store.start()
    await storeClient.connect().catch(() => undefined)
    const outcome = await run.done
    expect(outcome.code, outcome.stderr.slice(-3000)).toBe(0)
    expect(waiting.some((w) => w.startsWith('sink/') && w.includes(`Redis 127.0.0.1:${store.port}`)), 'progress events on NATS carried the wait').toBe(true)
    expect(reason).toMatch(/^sink: sink\/\d waits for Redis 127\.0\.0\.1:\d+ for/)
    expect(normalized(await readRedis(storeClient, prefix))).toEqual(expectedContent(input))
    const pipeline = redisPipeline(input, { name, url: store.url, prefix })
    const dead = await readDeadLetters(pipeline, join(dir, 'data'), 'sink')
    expect(dead).toHaveLength(input.partitions.flat().filter((e) => e.poison === true).length)
  }, 180_000)
})

describe.skipIf(!redis.available || !nats.available || !kafka.available)('Redis sink in a cluster', () => {
  const tempDirOf = tempDirs('weir-redis-zombie-')

  it('a worker paused past its timeout while its sink actors move, then resumed: it is fenced (by Redis or by the pipe, whichever it reaches first), and Redis holds every command once', async () => {
    const dir = tempDirOf()
    const cluster = `z${randomUUID().slice(0, 8)}`
    const name = `redis-zombie-${cluster}`
    const prefix = `weir:test:redis-sink:zombie:${cluster}`
    const client = new Redis(redis.url)
    onTestFinished(async () => {
      await removeKeys(client, prefix)
      client.disconnect()
    })
    const input: RedisInput = { partitions: [0, 1].map((p) => Array.from({ length: 1200 }, (_, i) => (i % 101 === 60 ? { account: (i + p) % 12, amount: 1, poison: true as const } : { account: (i * 5 + p) % 12, amount: i % 37 }))) }
    const inputFile = join(dir, 'input.json')
    writeFileSync(inputFile, JSON.stringify(input))
    const c = new TestCluster({ cluster, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs'), logLevel: 'info' })
    onTestFinished(() => c.killAll())
    const assignments: AssignmentMessage[] = []
    onTestFailed(() => console.log(`assignments: ${JSON.stringify(assignments.map((a) => [a.generation, a.actors]))}\n${c.logTails(30)}`))
    const observer = await NatsBus.connect({ servers: [nats.url], name: 'redis-zombie-test' })
    onTestFinished(() => observer.close())
    observer.subscribe(`weir.${cluster}.${name}.assignment`, (m) => {
      const a = assignmentMessage.safeParse(m)
      if (a.success) assignments.push(a.data)
    })
    c.startCoordinator('c1', ['--epoch-ms', '1000', '--worker-timeout-ms', '2000', '--settle-ms', '300'])
    // Small batches: a sink actor writes to Redis all the time, so the zombie has a write to make when it wakes.
    const args = (id: string): string[] => ['--epoch-ms', '1000', '--heartbeat-ms', '250', '--state-dir', join(dir, id),
      '--param', `input=${inputFile}`, '--param', `name=${name}`, '--param', `url=${redis.url}`, '--param', `prefix=${prefix}`, '--param', 'rate=60', '--param', 'batchRows=3']
    const workers = [c.startWorker('a', FIXTURE, args('a')), c.startWorker('b', FIXTURE, args('b'))]
    const sinksOf = (a: AssignmentMessage, worker: string): string[] => Object.entries(a.actors).filter(([actor, w]) => w === worker && actor.startsWith('sink/')).map(([actor]) => actor)
    await until(() => [...assignments].reverse().find((a) => new Set(Object.values(a.actors)).size === 2), 60_000, 'actors on both workers')
    await sleep(1000)
    const before = assignments.at(-1)!
    const zombie = workers.find((w) => sinksOf(before, w.name).length > 0)!
    const successor = workers.find((w) => w !== zombie)!.name
    const moved = sinksOf(before, zombie.name)
    const progressOf = async (actor: string): Promise<{ generation: number; written: number }> => {
      const h = await client.hgetall(`${prefix}:progress:${name}:${actor.replace('/', ':')}`)
      return { generation: Number(h.generation ?? 0), written: Object.values(JSON.parse(h.positions ?? '{}') as Record<string, number>).reduce((a, b) => a + b, 0) }
    }
    await until(async () => ((await Promise.all(moved.map(progressOf))).every((p) => p.written > 0) ? true : undefined), 60_000, `${zombie.name}'s sink actors wrote to Redis`)
    await sleep(300)
    const generations = (await Promise.all(moved.map(progressOf))).map((p) => p.generation)
    zombie.signal('SIGSTOP')
    const pausedAt = Date.now()
    await until(() => assignments.some((a) => a.generation > before.generation && !Object.values(a.actors).includes(zombie.name) && moved.every((x) => a.actors[x] === successor)), 30_000, `${moved.join(', ')} moved from ${zombie.name} to ${successor}`)
    // The successor claimed the moved actors (a new generation in their progress hashes) and writes on.
    const claimed = await until(async () => {
      const now = await Promise.all(moved.map(progressOf))
      return now.every((p, i) => p.generation > generations[i]!) ? now : undefined
    }, 30_000, `${successor} claimed ${moved.join(', ')}`)
    await until(async () => ((await Promise.all(moved.map(progressOf))).every((p, i) => p.written > claimed[i]!.written) ? true : undefined), 30_000, `${successor} wrote for the moved actors`)
    zombie.signal('SIGCONT')
    const resumedAt = Date.now()
    for (const w of workers) {
      const o = await w.done
      expect(o.code, `${w.name}${w === zombie ? ' (the zombie)' : ''}: ${o.stderr.slice(-2000)}`).toBe(0)
    }
    const log = readFileSync(zombie.logFile, 'utf8').split('\n')
    // Which fence comes first after SIGCONT is timing: a pending write meets the hash's generation
    // (WEIR_SINK_FENCED), a barrier meets the pipe's fenced producer. Both leave nothing of the
    // zombie's in Redis; the store's refusal alone is shown deterministically above ('two instances').
    const fenced = log.filter((l) => l.includes('actor fenced') && moved.some((x) => l.includes(`"actor":"${x}"`)) && Number(/"time":(\d+)/.exec(l)?.[1]) >= resumedAt)
    const byStore = fenced.filter((l) => l.includes('WEIR_SINK_FENCED'))
    console.log(`${zombie.name} (sink actors ${moved.join(', ')}) paused ${((resumedAt - pausedAt) / 1000).toFixed(1)} s; fenced after it resumed: ${fenced.length} actors, ${byStore.length} of them by Redis refusing the write`)
    expect(fenced.length, `${zombie.name}'s sink actors were fenced after it resumed`).toBeGreaterThan(0)
    expect(normalized(await readRedis(client, prefix))).toEqual(expectedContent(input))
  }, 240_000)
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})

