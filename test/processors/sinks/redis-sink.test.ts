/**
 * The Redis sink applies each record's commands once: appends (XADD, INCRBY) included, across
 * real SIGKILLs at generated points (compared with a crash-free run), across a restart of
 * Redis itself in the middle of a run (the monitor shows the sink holding the output back),
 * and with a zombie worker on a real cluster (its write refused by the generation, and
 * logged). A command Redis refuses dead-letters its record alone; bad options are refused
 * at start naming the field.
 *
 * WEIR_REDIS_PROPERTY_RUNS sets the property's number of cases (default 20); WEIR_PROPERTY_SEED replays one.
 */
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, Pipeline } from '../../../index.ts'
import { GeneratorSource, RedisSink, type RedisCommand } from '../../../processors/index.ts'
import { readDeadLetters, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
import { requireService } from '../../support/services.ts'
import { readProgress, readRedis, redisPipeline, removeKeys, type RedisInput } from './fixtures/redis-pipeline.ts'

const redis = await requireService('redis')
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
    for (const [what, make, field] of cases) {
      it(`refuses ${what} (${field})`, () => {
        let thrown: unknown
        try {
          make()
        } catch (err) {
          thrown = err
        }
        expect(thrown).toBeInstanceOf(ConfigError)
        expect((thrown as ConfigError).context.field).toBe(field)
        expect((thrown as ConfigError).message.startsWith(`${field}: `)).toBe(true)
      })
    }

    it('a pipeline with a bad option fails at start with the field named', async () => {
      const p = new Pipeline('redis-bad-option')
      p.source<number>('n', () => new GeneratorSource<number>({ count: 10, generate: (i) => ({ key: `k${i}`, value: i }) }))
        .to('sink', () => new RedisSink<number>({ url: 'redis://:pw@127.0.0.1:6379', commands }))
      await expect(startEmbedded(p, { dataDir: tempDir() }).then((run) => run.done)).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', context: { field: 'url' } })
    })
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})

void writeFileSync
void join
