/**
 * Leader election for coordinators through a lease in NATS KV. Upholds the "one coordinator
 * leads" part of cluster mode: at most one holder believes it leads at any moment (on its own
 * clock), and `term`, the fencing token written with every lease, grows strictly from leader
 * to leader so writes by a deposed leader can be refused (see cluster-metadata.ts).
 *
 * @example
 * const lease = await LeaderLease.open({ servers: ['nats://127.0.0.1:4222'], cluster: 'prod', holder: 'coord-a' })
 * lease.on('elected', (term) => coordinator.lead(term)).on('lost', () => coordinator.standDown())
 * await lease.start()
 */
import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream'
import { Kvm, type KV, type KvEntry } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { BusAuthError, connectNats, type NatsCredentials, type NatsTls } from '../runtime/open-bus.ts'
import { ConfigError, WeirError, type ErrorContext } from '../runtime/errors.ts'
import { createLogger } from '../runtime/log.ts'

/** The lease record stored under the lease key. `v` versions the shape. */
export interface LeaseRecord {
  v: 1
  /** Who holds (or last held) the lease. */
  holder: string
  /** Fencing token: strictly greater than every earlier holder's. */
  term: number
  /** Holder's wall clock (ms since epoch) when it sent this write. */
  renewedAt: number
  /** How long the holder claims the lease for after `renewedAt`. */
  ttlMs: number
  /** Set by a holder that gave the lease up: anyone may take it over at once. */
  released?: boolean
}

/**
 * The cluster's KV bucket cannot be used: NATS is unreachable (`retriable`: it may come back)
 * or the server runs without JetStream (not retriable: an operator must enable it). `servers`
 * names where we tried.
 */
export class KvUnavailableError extends WeirError {
  constructor(message: string, context: ErrorContext, options: { retriable: boolean; cause?: unknown }) {
    super('WEIR_KV_UNAVAILABLE', message, context, options)
  }
}

/**
 * A write carried a term older than the cluster's current one: a newer leader exists and this
 * coordinator must stop acting as leader without writing. Never retriable.
 */
export class LeaderFencedError extends WeirError {
  constructor(cluster: string, term: number, currentTerm: number) {
    super('WEIR_LEADER_FENCED', `cluster ${cluster}: term ${term} was fenced by term ${currentTerm}`, { cluster, term, currentTerm })
  }
}

export interface KvTarget {
  /** An open connection to reuse; it is left open on release. */
  nc?: NatsConnection
  /** `nats://host:port` URLs (no credentials in them) to connect to when no `nc` is given; that connection is closed on release. */
  servers?: string[]
  /** Credentials and TLS for `servers`: the same as the process's bus (resolveBusTarget). */
  credentials?: NatsCredentials
  tls?: NatsTls
  /** Give up connecting after this long, ms (reconnects later are unlimited). */
  connectTimeoutMs?: number
  /** Cluster name; the bucket is `weir-<cluster>`. */
  cluster: string
  log?: Logger
}

/** A cluster's bucket and the connection it came from. */
export interface ClusterBucket {
  kv: KV
  nc: NatsConnection
  /** True when we opened `nc` and must close it. */
  ownsConnection: boolean
  /** Where `nc` points, for error messages. */
  servers: string[]
  bucket: string
}

const NAME = /^[A-Za-z0-9_-]+$/
const KEY = /^[A-Za-z0-9_=/-]+(\.[A-Za-z0-9_=/-]+)*$/
/** Enough for `nats kv history` to show the last few holders; also lets a term survive a key delete. */
const BUCKET_HISTORY = 5

export function bucketName(cluster: string): string {
  return `weir-${cluster}`
}

/** True when a KV write failed its compare-and-set (someone else wrote the key first). */
export function isCasConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  )
}

/**
 * Connects (unless `nc` is given) and opens the cluster's bucket, creating it when missing.
 * Failures become a KvUnavailableError naming the servers.
 *
 * @example
 * const { kv } = await openClusterBucket({ servers: ['nats://127.0.0.1:4222'], cluster: 'prod' })
 * const entry = await kv.get('leader')
 */
export async function openClusterBucket(target: KvTarget): Promise<ClusterBucket> {
  if (!NAME.test(target.cluster ?? '')) throw new ConfigError('cluster', `'${target.cluster}' must be letters, digits, '-' or '_'`)
  const bucket = bucketName(target.cluster)
  const { nc, ownsConnection, servers } = await connectTo(target)
  try {
    const kv = await new Kvm(nc).create(bucket, { history: BUCKET_HISTORY })
    return { kv, nc, ownsConnection, servers, bucket }
  } catch (err) {
    if (ownsConnection) await nc.close().catch(() => undefined)
    throw kvError(`cannot open KV bucket ${bucket}`, servers, err)
  }
}

async function connectTo(target: KvTarget): Promise<{ nc: NatsConnection; ownsConnection: boolean; servers: string[] }> {
  if (target.nc !== undefined) return { nc: target.nc, ownsConnection: false, servers: [target.nc.getServer()] }
  const servers = target.servers ?? []
  if (servers.length === 0) throw new ConfigError('servers', 'give either an open NatsConnection (nc) or at least one nats://host:port')
  try {
    const nc = await connectNats({ servers, credentials: target.credentials ?? { kind: 'none' }, tls: target.tls }, { name: `weir-lease-${target.cluster}`, timeoutMs: target.connectTimeoutMs })
    return { nc, ownsConnection: true, servers }
  } catch (err) {
    // Refused credentials stay what they are: the CLI reports them as it does for the bus.
    if (err instanceof BusAuthError) throw err
    throw new KvUnavailableError(`cannot connect to NATS at ${servers.join(', ')}: ${(err as Error).message}`, { servers }, { retriable: true, cause: err })
  }
}

/** JetStream missing or a permission refused is an operator's problem; anything else (timeouts, reconnects) may clear up. */
export function kvError(what: string, servers: string[], err: unknown): KvUnavailableError {
  // JetStreamNotEnabled is not exported by @nats-io/jetstream's public module, so match its name.
  const noJetStream =
    (err instanceof Error && err.name === 'JetStreamNotEnabled') ||
    (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.JetStreamNotEnabledForAccount)
  // A request whose publish or reply subscription the server refused fails with the violation in its message.
  const refused = err instanceof Error && /Permissions Violation/i.test(err.message)
  const message = noJetStream
    ? `${what}: JetStream is not enabled on NATS at ${servers.join(', ')} (start nats-server with -js)`
    : refused
      ? `${what} on NATS at ${servers.join(', ')}: ${err.message} (the coordinator's NATS user needs the KV permissions of docs/operations.md, "Security")`
      : `${what} on NATS at ${servers.join(', ')}: ${(err as Error)?.message ?? String(err)}`
  return new KvUnavailableError(message, { servers }, { retriable: !noJetStream && !refused, cause: err })
}

/** Parses a stored lease; null for a value weir did not write (or a newer version of it). */
export function parseLease(entry: KvEntry | null): LeaseRecord | null {
  if (entry === null || entry.operation !== 'PUT') return null
  try {
    const r = entry.json<Partial<LeaseRecord>>()
    const ok = r.v === 1 && typeof r.holder === 'string' && Number.isSafeInteger(r.term) && typeof r.renewedAt === 'number' && typeof r.ttlMs === 'number'
    return ok ? (r as LeaseRecord) : null
  } catch {
    return null
  }
}

export interface LeaderLeaseOptions extends KvTarget {
  /** This coordinator's name; unique among the cluster's coordinators. */
  holder: string
  /** Lease key in the bucket: `leader` (one leader per cluster) or e.g. `leader.wordcount` (per pipeline). */
  key?: string
  /** How long a lease lasts without renewal, ms. Renewals run every ttl/3. */
  ttlMs?: number
  /** How often a standby looks at the lease, ms; defaults to min(ttl/3, 500) so a release hands over quickly. */
  pollMs?: number
  /**
   * How far coordinators' wall clocks may disagree, ms. A standby that has watched a lease
   * stand still for ttl (on its own monotonic clock) takes it over; one that just started
   * trusts `renewedAt` only once it is older than ttl + this allowance.
   */
  maxClockSkewMs?: number
}

export interface LeaderLeaseEvents {
  /** This instance now leads with `term`. */
  elected: [term: number]
  /** This instance stopped leading without releasing (taken over, or could not renew in time). */
  lost: [reason: string]
}

type LeaseState = 'idle' | 'contending' | 'leading' | 'stopped'

/** Allowed transitions; anything else is a bug in this file. */
const TRANSITIONS: Record<LeaseState, readonly LeaseState[]> = {
  idle: ['contending', 'stopped'],
  contending: ['leading', 'stopped'],
  leading: ['contending', 'stopped'],
  stopped: [],
}

/**
 * A coordinator's claim on the cluster's leadership. While started, it either contends
 * (watching the lease and taking it over once released or expired) or leads (renewing it
 * with a compare-and-set every ttl/3). It stops leading, and emits `lost`, as soon as a renewal
 * fails its compare-and-set or cannot complete before the lease would expire; it then
 * contends again. `isLeader` reads the clock, so a leader that was paused (GC, a stopped
 * process) is no longer leader the moment it resumes, even before its timers run.
 *
 * @example
 * const lease = await LeaderLease.open({ nc, cluster: 'prod', holder: 'coord-a', ttlMs: 5000 })
 * lease.on('elected', (term) => log.info({ term }, 'leading'))
 * await lease.start()
 */
export class LeaderLease extends EventEmitter<LeaderLeaseEvents> {
  readonly key: string
  readonly holder: string
  readonly ttlMs: number
  private state: LeaseState = 'idle'
  private heldTerm = 0
  /** Revision of our last successful lease write; the next renewal is conditional on it. */
  private revision = 0
  /** Monotonic time after which our lease may have expired in other coordinators' eyes. */
  private deadline = 0
  /** The lease revision a standby is watching and since when (its own monotonic clock). */
  private observed: { revision: number; since: number } | null = null
  /** While contending: the live lease another coordinator held at our last read, if any (a standby that follows a leader). */
  private leaderSeen: { holder: string; term: number } | undefined
  /** Highest term seen in any lease record, so a term never goes backwards in this process. */
  private highestTermSeen = 0
  private timer: NodeJS.Timeout | undefined
  private deadlineTimer: NodeJS.Timeout | undefined
  private tickRunning: Promise<void> = Promise.resolve()
  /** Set by release(): no new steps start, and a lease won meanwhile is released, not announced. */
  private stopping = false
  private readonly pollMs: number
  private readonly maxClockSkewMs: number

  private constructor(private readonly bucket: ClusterBucket, options: LeaderLeaseOptions, private readonly log: Logger) {
    super()
    this.key = options.key ?? 'leader'
    this.holder = options.holder
    this.ttlMs = options.ttlMs ?? 5000
    this.pollMs = options.pollMs ?? Math.min(this.ttlMs / 3, 500)
    this.maxClockSkewMs = options.maxClockSkewMs ?? 1000
  }

  /**
   * Opens (creating if missing) the cluster's bucket. Does not contend yet: attach the
   * listeners, then call `start()`.
   *
   * @example
   * const lease = await LeaderLease.open({ servers: ['nats://127.0.0.1:4222'], cluster: 'prod', holder: 'coord-a' })
   * lease.on('lost', (reason) => log.warn({ reason }, 'leadership lost'))
   * await lease.start()
   */
  static async open(options: LeaderLeaseOptions): Promise<LeaderLease> {
    if (typeof options.holder !== 'string' || options.holder === '') throw new ConfigError('holder', 'a non-empty coordinator name is needed')
    if (options.key !== undefined && !KEY.test(options.key)) throw new ConfigError('key', `'${options.key}' is not a valid KV key`)
    const ttlMs = options.ttlMs ?? 5000
    // Below ~300 ms a renewal round trip is a large part of ttl/3 and leadership would flap.
    if (!Number.isFinite(ttlMs) || ttlMs < 300) throw new ConfigError('ttlMs', `${ttlMs} is too short; use at least 300 ms`)
    const bucket = await openClusterBucket(options)
    const log = (options.log ?? createLogger()).child({ component: 'leader-lease', cluster: options.cluster, holder: options.holder })
    return new LeaderLease(bucket, options, log)
  }

  /** True while this instance holds an unexpired lease (judged on its own monotonic clock). */
  get isLeader(): boolean {
    return this.state === 'leading' && performance.now() < this.deadline
  }

  /** The term of the leadership this instance holds or last held; 0 if it never led. Check `isLeader` too. */
  get term(): number {
    return this.heldTerm
  }

  /**
   * The leader a contending (standby) coordinator saw at its last read of the lease: a live
   * lease another holder renews. Undefined while it leads, when the lease is free or expired,
   * or when the lease could not be read (NATS KV away): then it follows nobody.
   */
  get following(): { holder: string; term: number } | undefined {
    return this.state === 'contending' ? this.leaderSeen : undefined
  }

  /** Begins contending; resolves after the first attempt, so `isLeader` is already set if the lease was free. */
  async start(): Promise<void> {
    if (this.state !== 'idle') return
    this.transition('contending')
    await this.runTick()
  }

  /**
   * Stops contending; a leader marks its lease released (with a compare-and-set, so a
   * successor's lease is never touched) so a standby takes over at once. Does not emit `lost`.
   */
  async release(): Promise<void> {
    if (this.state === 'stopped' || this.stopping) return
    this.stopping = true
    this.stopTimers()
    // A step in flight may still win the lease; wait for it so that lease is released too.
    await this.tickRunning
    this.stopTimers()
    const wasLeading = this.state === 'leading'
    this.transition('stopped')
    if (wasLeading) {
      const record: LeaseRecord = { ...this.record(this.heldTerm), released: true }
      try {
        await this.bucket.kv.update(this.key, JSON.stringify(record), this.revision, this.ttlMs)
        this.log.info({ term: this.heldTerm }, 'lease released')
      } catch (err) {
        // A successor already holds it (or NATS is away and the lease will expire on its own).
        this.log.warn({ term: this.heldTerm, err: (err as Error).message }, 'could not mark lease released')
      }
    }
    await this.closeConnection()
  }

  private async closeConnection(): Promise<void> {
    if (this.bucket.ownsConnection) await this.bucket.nc.close().catch(() => undefined)
  }

  private transition(to: LeaseState): void {
    if (!TRANSITIONS[this.state].includes(to)) throw new Error(`leader lease: ${this.state} -> ${to} is not allowed`)
    this.state = to
  }

  private stopTimers(): void {
    clearTimeout(this.timer)
    clearTimeout(this.deadlineTimer)
    this.timer = undefined
    this.deadlineTimer = undefined
  }

  /** One step at a time: a tick never overlaps the previous one. */
  private runTick(): Promise<void> {
    this.tickRunning = this.tickRunning.then(() => this.tick()).catch((err: unknown) => {
      this.log.error({ err: (err as Error).message }, 'lease step failed')
    })
    return this.tickRunning
  }

  private schedule(ms: number): void {
    if (this.state === 'stopped' || this.stopping) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => void this.runTick(), Math.max(0, ms))
  }

  private async tick(): Promise<void> {
    if (this.state === 'contending') {
      const won = await this.contend()
      this.schedule(won ? this.ttlMs / 3 : this.pollMs)
    } else if (this.state === 'leading') {
      const next = await this.renew()
      this.schedule(next)
    }
  }

  private record(term: number): LeaseRecord {
    return { v: 1, holder: this.holder, term, renewedAt: Date.now(), ttlMs: this.ttlMs }
  }

  /** Reads the lease and takes it if it is absent, released or expired; true when we took it. */
  private async contend(): Promise<boolean> {
    let entry: KvEntry | null
    try {
      entry = await this.bucket.kv.get(this.key)
    } catch (err) {
      this.leaderSeen = undefined
      this.log.warn({ err: (err as Error).message }, 'cannot read lease')
      return false
    }
    const current = parseLease(entry)
    if (current !== null) this.highestTermSeen = Math.max(this.highestTermSeen, current.term)
    const held = entry !== null && !this.takeable(entry, current)
    this.leaderSeen = held && current !== null && current.holder !== this.holder ? { holder: current.holder, term: current.term } : undefined
    if (held) return false
    const term = Math.max(this.highestTermSeen, current?.term ?? 0, await this.termBeforeDelete(entry)) + 1
    const record = this.record(term)
    const sentAt = performance.now()
    try {
      // No live entry: create-if-absent (kv.create also succeeds over a delete marker). Otherwise
      // take over only if nobody renewed since we read it.
      const revision =
        entry === null || entry.operation !== 'PUT'
          ? await this.bucket.kv.create(this.key, JSON.stringify(record))
          : await this.bucket.kv.update(this.key, JSON.stringify(record), entry.revision, this.ttlMs)
      if (this.state !== 'contending') return false
      this.becomeLeader(term, revision, sentAt)
      return true
    } catch (err) {
      if (!isCasConflict(err)) this.log.warn({ err: (err as Error).message }, 'cannot write lease')
      return false
    }
  }

  private takeable(entry: KvEntry, current: LeaseRecord | null): boolean {
    if (entry.operation !== 'PUT') return true
    if (current?.released === true) return true
    const now = performance.now()
    if (this.observed?.revision !== entry.revision) this.observed = { revision: entry.revision, since: now }
    // A record we cannot read is nobody's lease once it has stood still for our own ttl.
    const ttlMs = current?.ttlMs ?? this.ttlMs
    const stoodStill = now - this.observed.since > ttlMs
    const wallExpired = current !== null && Date.now() - current.renewedAt > ttlMs + this.maxClockSkewMs
    return stoodStill || wallExpired
  }

  /** After someone deleted the key, the term it held is still in the bucket's history. */
  private async termBeforeDelete(entry: KvEntry | null): Promise<number> {
    if (entry === null || entry.operation === 'PUT') return 0
    let highest = 0
    try {
      const history = await this.bucket.kv.history({ key: this.key })
      for await (const e of history) {
        highest = Math.max(highest, parseLease(e)?.term ?? 0)
        if (e.delta === 0) break
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot read lease history; term continues from what this process saw')
    }
    return highest
  }

  private becomeLeader(term: number, revision: number, sentAt: number): void {
    this.transition('leading')
    this.heldTerm = term
    this.revision = revision
    this.observed = null
    this.extendDeadline(sentAt)
    this.log.info({ term, revision }, 'elected leader')
    if (!this.stopping) this.emit('elected', term)
  }

  /** The lease counts from when we sent the write: others may have seen it from then on. */
  private extendDeadline(sentAt: number): void {
    this.deadline = sentAt + this.ttlMs
    clearTimeout(this.deadlineTimer)
    this.deadlineTimer = setTimeout(() => this.checkDeadline(), Math.max(0, this.deadline - performance.now()))
  }

  private checkDeadline(): void {
    if (this.state === 'leading' && performance.now() >= this.deadline) this.lose('lease expired before it could be renewed')
  }

  /** Renews with a compare-and-set; returns the delay until the next tick. */
  private async renew(): Promise<number> {
    const sentAt = performance.now()
    const remaining = this.deadline - sentAt
    if (remaining <= 0) {
      this.lose('lease expired before it could be renewed')
      return this.pollMs
    }
    try {
      const revision = await this.bucket.kv.update(this.key, JSON.stringify(this.record(this.heldTerm)), this.revision, remaining)
      if (this.state !== 'leading') return this.pollMs
      // Written, but too late: a standby may already have judged the lease expired.
      if (performance.now() >= this.deadline) {
        this.lose('renewal completed after the lease expired')
        return this.pollMs
      }
      this.revision = revision
      this.extendDeadline(sentAt)
      return this.ttlMs / 3
    } catch (err) {
      if (this.state !== 'leading') return this.pollMs
      if (isCasConflict(err)) {
        this.lose('lease was taken over')
        return this.pollMs
      }
      this.log.warn({ term: this.heldTerm, err: (err as Error).message }, 'lease renewal failed; retrying')
      if (performance.now() >= this.deadline) {
        this.lose('lease expired before it could be renewed')
        return this.pollMs
      }
      return Math.min(this.ttlMs / 10, this.deadline - performance.now())
    }
  }

  private lose(reason: string): void {
    clearTimeout(this.deadlineTimer)
    this.deadlineTimer = undefined
    this.transition('contending')
    this.observed = null
    this.log.warn({ term: this.heldTerm, reason }, 'leadership lost')
    this.emit('lost', reason)
  }
}
