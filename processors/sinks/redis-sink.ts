/**
 * exactly-once: each record's commands (SET, HSET, XADD, INCRBY, DEL) are applied to Redis
 * once, appends (XADD, INCRBY) included, across crashes, restarts, store outages and zombies.
 * A batch of records' commands and the actor's progress (a hash: generation, input positions,
 * checkpoint, epoch, pending dead letters) are applied by one Lua script, which Redis runs
 * atomically: the script applies nothing unless the hash still has this instance's generation
 * (a zombie is refused) and the positions the batch starts from (a batch whose answer was lost
 * is recognised by the positions it wrote, and not applied twice).
 *
 * Limits of the guarantee:
 * - One Redis server (a primary). Redis Cluster is not supported: the script touches the
 *   progress hash and every command's key at once, which a cluster allows only in one slot.
 * - What survives a crash of Redis itself is what its persistence keeps. With `appendonly yes`
 *   and `appendfsync always`, an acknowledged batch is on disk with its progress: nothing is
 *   lost. Otherwise (`appendfsync everysec`, RDB snapshots only, no persistence, or a failover
 *   to a replica that had not received the last writes) a Redis crash can lose acknowledged
 *   batches; they go together with their progress (one script, one AOF entry), so the sink
 *   then finds the store's progress behind the pipe's checkpoint at its next start and stops
 *   with an error naming the actor, rather than writing on over a hole.
 * - Within a record, commands are applied in order; when Redis refuses one, the record's
 *   earlier commands are undone (from DUMPs taken before it) and the record is dead-lettered.
 */
import { readFileSync } from 'node:fs'
import type { ConnectionOptions } from 'node:tls'
import { Redis, type RedisOptions } from 'ioredis'
import {
  ConfigError,
  ProcessingError,
  SinkFencedError,
  StateCorruptedError,
  StoreSink,
  encodePositions,
  type LifecycleContext,
  type PendingDeadLetter,
  type RejectedRow,
  type SinkActor,
  type SinkBatch,
  type SinkClaim,
  type SinkProgress,
  type StoreSinkOptions,
  type StreamRecord,
  type WriteResult,
} from '../../index.ts'
import { CLAIM_SCRIPT, WRITE_SCRIPT } from './redis/scripts.ts'

/** A value Redis stores: numbers are written in their decimal form. */
export type RedisValue = string | number

/** A command the sink applies for a record. Keys get the sink's `keyPrefix`. */
export type RedisCommand =
  /** SET key value [PX ttlMs] */
  | { op: 'set'; key: string; value: RedisValue; ttlMs?: number }
  /** HSET key field value [field value ...] */
  | { op: 'hset'; key: string; fields: Readonly<Record<string, RedisValue>> }
  /** XADD stream [MAXLEN = maxLen] * field value [...]: an append, exactly-once thanks to the progress check. */
  | { op: 'xadd'; stream: string; fields: Readonly<Record<string, RedisValue>>; maxLen?: number }
  /** INCRBY key by: an append too. */
  | { op: 'incrby'; key: string; by: number }
  /** DEL key: a tombstone. */
  | { op: 'del'; key: string }

export interface RedisTlsOptions {
  /** PEM file of the certificate authorities to trust (default: Node's). */
  caFile?: string
  /** Client certificate and key files (PEM), for servers that ask for one. */
  certFile?: string
  keyFile?: string
  /** Host name the server's certificate must name (default: the URL's host). */
  servername?: string
}

export interface RedisSinkOptions<T> extends StoreSinkOptions {
  /**
   * `redis://host:port/db` or `rediss://…` (TLS), without a password (refused: give it with
   * `passwordEnv` or `passwordFile`). Exactly one of `url` and `urlEnv`.
   */
  url?: string
  /** The name of an environment variable holding the URL; it may hold the password. */
  urlEnv?: string
  /** Redis ACL user (default: the URL's, else `default`). */
  username?: string
  /** The name of an environment variable holding the password. */
  passwordEnv?: string
  /** A file holding the password (read at every connect; a trailing newline is dropped). */
  passwordFile?: string
  /** TLS: `true`, or files and a server name; a `rediss://` URL turns it on too. */
  tls?: boolean | RedisTlsOptions
  /** The commands for a record (none: the record leaves nothing). A throw, or a command that is not well formed, dead-letters the record. */
  commands: (record: StreamRecord<T>) => RedisCommand | readonly RedisCommand[]
  /** Put before every command's key (`app:`): default none. */
  keyPrefix?: string
  /** The progress hashes are `<progressPrefix>:<pipeline>:<stage>:<partition>`. Default `weir:progress`. */
  progressPrefix?: string
  /** A command that gets no answer for this long fails (and is retried: the progress check makes that safe), ms. Default 30000. */
  commandTimeoutMs?: number
}

/** A record's commands as the write script reads them: keys, and the arguments that refer to them. */
interface EncodedRecord {
  keys: string[]
  /** Per command: op, index among `keys` (from 0), number of arguments, arguments. */
  args: string[]
  commands: number
}

const DEFAULT_PROGRESS_PREFIX = 'weir:progress'

/**
 * Writes records to Redis as commands of a mapping, exactly once (see the file's first
 * comment for the guarantee and its limits; docs/sinks/redis.md has the details).
 *
 * @example
 * stream.to('redis', () => new RedisSink<Order>({
 *   url: 'redis://127.0.0.1:6379', passwordEnv: 'REDIS_PASSWORD', keyPrefix: 'shop:',
 *   commands: (r) => [{ op: 'hset', key: `order:${r.key}`, fields: { status: r.value.status } }, { op: 'xadd', stream: 'orders', fields: { id: r.key!, status: r.value.status } }],
 * }))
 */
export class RedisSink<T = unknown> extends StoreSink<T, EncodedRecord> {
  private readonly url: URL
  private readonly keyPrefix: string
  private readonly progressPrefix: string
  private readonly commandTimeoutMs: number
  private client: Redis | undefined
  private shas: { claim?: string; write?: string } = {}

  constructor(private readonly options: RedisSinkOptions<T>) {
    super(options)
    this.url = parseUrl(options)
    if (options.passwordEnv !== undefined && (typeof options.passwordEnv !== 'string' || process.env[options.passwordEnv] === undefined)) {
      throw new ConfigError('passwordEnv', `the environment variable ${String(options.passwordEnv)} is not set`)
    }
    if (options.passwordFile !== undefined) readSecret('passwordFile', options.passwordFile)
    if (options.passwordEnv !== undefined && options.passwordFile !== undefined) throw new ConfigError('passwordEnv', 'give the password with passwordEnv or passwordFile, not both')
    if (typeof options.commands !== 'function') throw new ConfigError('commands', 'must be a function of the record returning the commands to apply')
    if (options.keyPrefix !== undefined && typeof options.keyPrefix !== 'string') throw new ConfigError('keyPrefix', `must be a string, got ${typeof options.keyPrefix}`)
    if (options.progressPrefix !== undefined && (typeof options.progressPrefix !== 'string' || options.progressPrefix === '')) throw new ConfigError('progressPrefix', 'must be a non-empty string')
    if (options.tls !== undefined && typeof options.tls !== 'boolean' && (typeof options.tls !== 'object' || options.tls === null)) throw new ConfigError('tls', 'must be true, false or { caFile, certFile, keyFile, servername }')
    if (typeof options.tls === 'object') {
      for (const field of ['caFile', 'certFile', 'keyFile'] as const) {
        const file = options.tls[field]
        if (file !== undefined) readSecret(`tls.${field}`, file)
      }
    }
    this.keyPrefix = options.keyPrefix ?? ''
    this.progressPrefix = options.progressPrefix ?? DEFAULT_PROGRESS_PREFIX
    this.commandTimeoutMs = options.commandTimeoutMs ?? 30_000
    if (!Number.isSafeInteger(this.commandTimeoutMs) || this.commandTimeoutMs < 1) throw new ConfigError('commandTimeoutMs', `must be a whole number of ms >= 1, got ${String(options.commandTimeoutMs)}`)
  }

  protected describeStore(): string {
    return `Redis ${this.url.host}`
  }

  /** The hash that holds an actor's progress. */
  progressKey(actor: SinkActor): string {
    return `${this.progressPrefix}:${actor.pipeline}:${actor.stage}:${actor.partition}`
  }

  protected async connect(ctx: LifecycleContext): Promise<void> {
    // A client of a failed attempt is dropped: ioredis would keep reconnecting it on its own.
    this.client?.disconnect()
    const client = new Redis(this.clientOptions(ctx))
    // Errors also come as events (a reconnect that fails); the sink sees them as failed commands.
    client.on('error', () => undefined)
    this.client = client
    try {
      await client.connect()
    } catch (err) {
      client.disconnect()
      this.client = undefined
      throw err
    }
  }

  private clientOptions(ctx: LifecycleContext): RedisOptions {
    const o = this.options
    const password = o.passwordEnv !== undefined ? process.env[o.passwordEnv] : o.passwordFile !== undefined ? readSecret('passwordFile', o.passwordFile) : this.url.password === '' ? undefined : decodeURIComponent(this.url.password)
    const tls = this.url.protocol === 'rediss:' || o.tls === true || typeof o.tls === 'object' ? tlsOptions(o.tls) : undefined
    return {
      host: this.url.hostname,
      port: this.url.port === '' ? 6379 : Number(this.url.port),
      db: this.url.pathname.length > 1 ? Number(this.url.pathname.slice(1)) : 0,
      ...(o.username !== undefined || this.url.username !== '' ? { username: o.username ?? decodeURIComponent(this.url.username) } : {}),
      ...(password === undefined ? {} : { password }),
      ...(tls === undefined ? {} : { tls }),
      connectionName: `weir:${ctx.pipeline}:${ctx.stage}:${ctx.partition}`,
      lazyConnect: true,
      // Failures come back at once: the sink retries with backoff, holds the actor back and
      // tells the monitor; a write that may have run is recognised by its progress.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.commandTimeoutMs,
      connectTimeout: 10_000,
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    }
  }

  protected async disconnect(): Promise<void> {
    const client = this.client
    this.client = undefined
    if (client === undefined) return
    await client.quit().catch(() => client.disconnect())
  }

  protected toRow(record: StreamRecord<T>): EncodedRecord {
    const mapped = this.options.commands(record)
    const list: readonly unknown[] = Array.isArray(mapped) ? mapped : [mapped]
    const encoded: EncodedRecord = { keys: [], args: [], commands: list.length }
    list.forEach((c, i) => encodeCommand(c, i, this.keyPrefix, encoded))
    return encoded
  }

  protected async claim(actor: SinkActor): Promise<SinkClaim> {
    const reply = (await this.run('claim', [this.progressKey(actor)], [])) as [number, string, string, string, string]
    const [generation, positions, checkpoint, epoch, deadLetters] = reply
    if (positions === '') return { generation: Number(generation), progress: undefined }
    return { generation: Number(generation), progress: this.parseProgress(actor, Number(generation), positions, checkpoint, epoch, deadLetters) }
  }

  protected async write(batch: SinkBatch<EncodedRecord>): Promise<WriteResult> {
    const actor = batch.actor
    const base = batch.progress([])
    const keys = [this.progressKey(actor)]
    const args = [String(batch.generation), encodePositions(batch.from), encodePositions(batch.to), String(base.checkpoint), String(base.epoch), JSON.stringify(base.deadLetters), String(batch.rows.length)]
    for (const { row, record } of batch.rows) {
      // The row's key indexes count from its first key; in KEYS they come after the ones before (Lua counts from 1).
      const first = keys.length + 1
      keys.push(...row.keys)
      args.push(record.topic, String(record.offset), String(row.commands))
      let a = 0
      for (let c = 0; c < row.commands; c++) {
        const n = Number(row.args[a + 2])
        args.push(row.args[a]!, String(first + Number(row.args[a + 1])), row.args[a + 2]!, ...row.args.slice(a + 3, a + 3 + n))
        a += 3 + n
      }
    }
    const reply = (await this.run('write', keys, args)) as string[]
    const context = { stage: actor.stage, partition: actor.partition, store: this.describeStore(), progressKey: keys[0] }
    switch (reply[0]) {
      case 'fenced':
        throw new SinkFencedError(`${actor.stage}/${actor.partition}: ${this.describeStore()} refused a write of generation ${batch.generation}: ${keys[0]} has generation ${reply[1]} (another instance claimed the actor)`, { ...context, generation: batch.generation, storeGeneration: reply[1] })
      case 'corrupted':
        throw new StateCorruptedError(`${actor.stage}/${actor.partition}: ${keys[0]} has positions ${reply[1]}, but this write continues from ${encodePositions(batch.from)} to ${encodePositions(batch.to)}: the progress was changed outside this instance`, { ...context, storePositions: reply[1] })
      case 'already-written':
        return { outcome: 'already-written', progress: this.parseProgress(actor, batch.generation, reply[1]!, reply[2]!, reply[3]!, reply[4]!) }
      case 'written': {
        const rejected: RejectedRow[] = []
        for (let i = 1; i + 1 < reply.length; i += 2) {
          const index = Number(reply[i])
          const letter = JSON.parse(reply[i + 1]!) as PendingDeadLetter
          const record = batch.rows[index]!.record
          rejected.push({ index, error: new ProcessingError(letter.message, { stage: actor.stage, partition: actor.partition, topic: record.topic, offset: record.offset }), detail: letter.detail })
        }
        return { outcome: 'written', rejected }
      }
      default:
        throw new StateCorruptedError(`${actor.stage}/${actor.partition}: the write script answered ${JSON.stringify(reply).slice(0, 200)}`, context)
    }
  }

  protected override isUnavailable(err: unknown): boolean {
    if (super.isUnavailable(err)) return true
    const message = (err as Error)?.message ?? ''
    const name = (err as Error)?.name ?? ''
    return name === 'MaxRetriesPerRequestError' || UNAVAILABLE_MESSAGES.some((m) => message.startsWith(m)) || UNAVAILABLE_REPLIES.some((r) => message.startsWith(`${r} `))
  }

  protected override resetHint(actor: SinkActor): string {
    return `redis-cli -h ${this.url.hostname} -p ${this.url.port === '' ? 6379 : this.url.port}${this.url.pathname.length > 1 ? ` -n ${this.url.pathname.slice(1)}` : ''} DEL ${this.progressKey(actor)}`
  }

  /** EVALSHA of one of the scripts, loading it first (and again after NOSCRIPT: a restarted Redis forgot it). */
  private async run(script: 'claim' | 'write', keys: readonly string[], args: readonly string[]): Promise<unknown> {
    const client = this.client
    if (client === undefined) throw Object.assign(new Error('Connection is closed.'), { code: 'ECONNRESET' })
    const source = script === 'claim' ? CLAIM_SCRIPT : WRITE_SCRIPT
    for (let attempt = 0; ; attempt++) {
      const sha = this.shas[script] ?? (this.shas[script] = (await client.script('LOAD', source)) as string)
      try {
        return await client.call('EVALSHA', [sha, keys.length, ...keys, ...args])
      } catch (err) {
        if (attempt > 0 || !(err as Error)?.message?.startsWith('NOSCRIPT')) throw err
        this.shas[script] = undefined
      }
    }
  }

  private parseProgress(actor: SinkActor, generation: number, positions: string, checkpoint: string, epoch: string, deadLetters: string): SinkProgress {
    try {
      return { generation, positions: JSON.parse(positions) as Record<string, number>, checkpoint: Number(checkpoint), epoch: Number(epoch), deadLetters: JSON.parse(deadLetters) as PendingDeadLetter[] }
    } catch (err) {
      throw new StateCorruptedError(`${actor.stage}/${actor.partition}: ${this.progressKey(actor)} holds progress that is not the sink's (${(err as Error).message})`, { stage: actor.stage, partition: actor.partition })
    }
  }
}

/** Errors of ioredis and of a Redis that cannot take the write now (loading, a failover, a busy script, out of memory). */
const UNAVAILABLE_MESSAGES = ['Connection is closed', "Stream isn't writeable", 'Command timed out', 'Reached the max retries per request limit', 'connect ETIMEDOUT', 'Socket closed unexpectedly']
const UNAVAILABLE_REPLIES = ['LOADING', 'BUSY', 'MASTERDOWN', 'READONLY', 'TRYAGAIN', 'CLUSTERDOWN', 'OOM', 'MISCONF', 'NOREPLICAS', 'UNBLOCKED']

function parseUrl<T>(o: RedisSinkOptions<T>): URL {
  if ((o.url === undefined) === (o.urlEnv === undefined)) throw new ConfigError('url', 'give exactly one of url and urlEnv')
  const field = o.url !== undefined ? 'url' : 'urlEnv'
  let text: string
  if (o.url !== undefined) {
    if (typeof o.url !== 'string') throw new ConfigError('url', `must be a string, got ${typeof o.url}`)
    text = o.url
  } else {
    const value = typeof o.urlEnv === 'string' ? process.env[o.urlEnv] : undefined
    if (value === undefined || value === '') throw new ConfigError('urlEnv', `the environment variable ${String(o.urlEnv)} is not set`)
    text = value
  }
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new ConfigError(field, `not a URL: expected redis://host:port[/db] or rediss://…${field === 'url' ? `, got '${text}'` : ''}`)
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new ConfigError(field, `expected redis:// or rediss://, got ${url.protocol}//`)
  if (url.pathname.length > 1 && !/^\/\d+$/.test(url.pathname)) throw new ConfigError(field, `the path is the database number (/0 … /15), got ${url.pathname}`)
  if (field === 'url' && url.password !== '') throw new ConfigError('url', 'holds a password: a pipeline must not; give it with passwordEnv or passwordFile (or the whole URL with urlEnv)')
  return url
}

function readSecret(field: string, file: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '')
  } catch (err) {
    throw new ConfigError(field, `cannot read ${file}: ${(err as Error).message}`)
  }
}

function tlsOptions(tls: boolean | RedisTlsOptions | undefined): ConnectionOptions {
  if (typeof tls !== 'object') return {}
  return {
    ...(tls.caFile === undefined ? {} : { ca: readSecret('tls.caFile', tls.caFile) }),
    ...(tls.certFile === undefined ? {} : { cert: readSecret('tls.certFile', tls.certFile) }),
    ...(tls.keyFile === undefined ? {} : { key: readSecret('tls.keyFile', tls.keyFile) }),
    ...(tls.servername === undefined ? {} : { servername: tls.servername }),
  }
}

/** Checks one command of the mapping's answer and appends it to `out`; a malformed one throws (the record is dead-lettered). */
function encodeCommand(c: unknown, i: number, prefix: string, out: EncodedRecord): void {
  const where = `commands()[${i}]`
  if (typeof c !== 'object' || c === null) throw new TypeError(`${where}: expected a command object, got ${c === null ? 'null' : typeof c}`)
  const cmd = c as Record<string, unknown>
  const key = (field: 'key' | 'stream'): void => {
    const k = cmd[field]
    if (typeof k !== 'string' || k === '') throw new TypeError(`${where}.${field}: expected a non-empty string, got ${JSON.stringify(k)}`)
    out.keys.push(prefix + k)
  }
  const value = (field: string, v: unknown): string => {
    if (typeof v === 'string') return v
    if (typeof v === 'number' && Number.isFinite(v)) return String(v)
    throw new TypeError(`${where}.${field}: expected a string or a finite number, got ${JSON.stringify(v) ?? typeof v}`)
  }
  const fields = (): string[] => {
    const f = cmd.fields
    if (typeof f !== 'object' || f === null || Array.isArray(f) || Object.keys(f).length === 0) throw new TypeError(`${where}.fields: expected an object of at least one field`)
    return Object.entries(f).flatMap(([name, v]) => [name, value(`fields.${name}`, v)])
  }
  const whole = (field: string, v: unknown, min: number): string => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new TypeError(`${where}.${field}: expected a whole number >= ${min}, got ${JSON.stringify(v)}`)
    return String(v)
  }
  const push = (op: string, args: string[]): void => {
    out.args.push(op, String(out.keys.length - 1), String(args.length), ...args)
  }
  switch (cmd.op) {
    case 'set':
      key('key')
      return push('set', [value('value', cmd.value), cmd.ttlMs === undefined ? '' : whole('ttlMs', cmd.ttlMs, 1)])
    case 'hset':
      key('key')
      return push('hset', fields())
    case 'xadd':
      key('stream')
      return push('xadd', [cmd.maxLen === undefined ? '' : whole('maxLen', cmd.maxLen, 0), ...fields()])
    case 'incrby':
      key('key')
      return push('incrby', [whole('by', cmd.by, Number.MIN_SAFE_INTEGER)])
    case 'del':
      key('key')
      return push('del', [])
    default:
      throw new TypeError(`${where}.op: expected one of set, hset, xadd, incrby, del, got ${JSON.stringify(cmd.op)}`)
  }
}
