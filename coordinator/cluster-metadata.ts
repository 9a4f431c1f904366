/**
 * The leader's durable metadata (members, generation, assignment, completed epochs) in the
 * cluster's NATS KV bucket, beside the lease. Upholds the "a deposed leader cannot overwrite
 * its successor" part of cluster mode: every write carries the writer's term and is refused
 * when the lease or the stored metadata already carries a newer one.
 *
 * @example
 * const meta = await ClusterMetadata.open({ nc, cluster: 'prod' })
 * lease.on('elected', (term) => void meta.claim(term).then((m) => coordinator.resume(m)))
 * await meta.completeEpoch(lease.term, 'wordcount', 42)
 */
import type { KvEntry } from '@nats-io/kv'
import type { Logger } from 'pino'
import { ConfigError, WeirError } from '../runtime/errors.ts'
import { createLogger } from '../runtime/log.ts'
import { isCasConflict, kvError, LeaderFencedError, openClusterBucket, parseLease, type ClusterBucket, type KvTarget } from './leader-lease.ts'

/** What a leader needs to continue where the previous one stopped. `v` versions the shape. */
export interface ClusterMetadataRecord {
  v: 1
  /** Term of the leader that wrote this. */
  term: number
  /** Workers in the cluster. */
  members: string[]
  /** Bumped on every rebalance; workers ignore assignments from older generations. */
  generation: number
  /** Actor id → worker. */
  assignment: Record<string, string>
  /** Pipeline → last epoch whose checkpoint completed. */
  completedEpochs: Record<string, number>
}

export interface ClusterMetadataOptions extends KvTarget {
  /** Lease key whose term fences writes; the same as LeaderLease's `key`. */
  leaseKey?: string
  /** Metadata key in the bucket. */
  key?: string
}

/** Compare-and-set attempts before giving up; each retry means another write of our own term raced us. */
const MAX_ATTEMPTS = 5

function empty(): ClusterMetadataRecord {
  return { v: 1, term: 0, members: [], generation: 0, assignment: {}, completedEpochs: {} }
}

function parseMetadata(entry: KvEntry | null): ClusterMetadataRecord | null {
  if (entry === null || entry.operation !== 'PUT') return null
  let r: Partial<ClusterMetadataRecord> = {}
  try {
    r = entry.json<Partial<ClusterMetadataRecord>>()
  } catch {
    // Not JSON: falls through to the shape check below.
  }
  const ok = r.v === 1 && Number.isSafeInteger(r.term) && Array.isArray(r.members) && Number.isSafeInteger(r.generation)
  // Never treat an unreadable record as empty: a leader would then overwrite real state.
  if (!ok) throw new WeirError('WEIR_METADATA_INVALID', 'cluster metadata has an unknown shape; was it written by a newer weir?', { revision: entry.revision })
  return { ...empty(), ...r } as ClusterMetadataRecord
}

/**
 * Reads and writes the cluster metadata. Writes are read-modify-write with a compare-and-set
 * on the revision, and take the writer's term: a term older than the lease's or the stored
 * one throws LeaderFencedError.
 *
 * @example
 * const meta = await ClusterMetadata.open({ servers: ['nats://127.0.0.1:4222'], cluster: 'prod' })
 * await meta.update(term, (m) => ({ ...m, members: ['w1', 'w2'], generation: m.generation + 1 }))
 * const { completedEpochs } = await meta.read()
 */
export class ClusterMetadata {
  private constructor(
    private readonly bucket: ClusterBucket,
    private readonly cluster: string,
    private readonly leaseKey: string,
    private readonly key: string,
    private readonly log: Logger,
  ) {}

  static async open(options: ClusterMetadataOptions): Promise<ClusterMetadata> {
    const key = options.key ?? 'meta'
    const leaseKey = options.leaseKey ?? 'leader'
    if (key === leaseKey) throw new ConfigError('key', `the metadata key must differ from the lease key '${leaseKey}'`)
    const bucket = await openClusterBucket(options)
    const log = (options.log ?? createLogger()).child({ component: 'cluster-metadata', cluster: options.cluster })
    return new ClusterMetadata(bucket, options.cluster, leaseKey, key, log)
  }

  /** The stored metadata, or an empty record (term 0) when no leader wrote any yet. */
  async read(): Promise<ClusterMetadataRecord> {
    return (await this.readEntry()).metadata
  }

  /**
   * Stamps `term` on the metadata and returns it. A new leader calls this first: from then
   * on, writes by any older term fail their compare-and-set or the term check.
   */
  claim(term: number): Promise<ClusterMetadataRecord> {
    return this.update(term, (m) => m)
  }

  /** Records that `pipeline` completed `epoch`; an older epoch than the stored one is ignored. */
  completeEpoch(term: number, pipeline: string, epoch: number): Promise<ClusterMetadataRecord> {
    return this.update(term, (m) => ({ ...m, completedEpochs: { ...m.completedEpochs, [pipeline]: Math.max(epoch, m.completedEpochs[pipeline] ?? -1) } }))
  }

  /**
   * Applies `change` to the current metadata and writes the result with `term`. `change` may
   * run more than once (after a compare-and-set conflict), so it must not have side effects.
   */
  async update(term: number, change: (current: ClusterMetadataRecord) => ClusterMetadataRecord): Promise<ClusterMetadataRecord> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      await this.checkLease(term)
      const { metadata, revision } = await this.readEntry()
      if (metadata.term > term) throw new LeaderFencedError(this.cluster, term, metadata.term)
      const next: ClusterMetadataRecord = { ...change(structuredClone(metadata)), v: 1, term }
      try {
        const data = JSON.stringify(next)
        await (revision === 0 ? this.bucket.kv.create(this.key, data) : this.bucket.kv.update(this.key, data, revision))
        return next
      } catch (err) {
        if (!isCasConflict(err)) throw kvError(`cannot write cluster metadata ${this.bucket.bucket}/${this.key}`, this.bucket.servers, err)
        this.log.debug({ term, attempt }, 'metadata changed while writing; retrying')
      }
    }
    throw new WeirError('WEIR_METADATA_CONFLICT', `cluster ${this.cluster}: metadata kept changing during ${MAX_ATTEMPTS} writes`, { cluster: this.cluster, term }, { retriable: true })
  }

  async close(): Promise<void> {
    if (this.bucket.ownsConnection) await this.bucket.nc.close().catch(() => undefined)
  }

  /** A newer lease means a newer leader, even before it wrote any metadata. */
  private async checkLease(term: number): Promise<void> {
    const lease = parseLease(await this.get(this.leaseKey))
    if (lease !== null && lease.term > term) throw new LeaderFencedError(this.cluster, term, lease.term)
  }

  private async readEntry(): Promise<{ metadata: ClusterMetadataRecord; revision: number }> {
    const entry = await this.get(this.key)
    // A deleted key keeps its revision: the next write must be conditional on the delete marker.
    return { metadata: parseMetadata(entry) ?? empty(), revision: entry?.revision ?? 0 }
  }

  private async get(key: string): Promise<KvEntry | null> {
    try {
      return await this.bucket.kv.get(key)
    } catch (err) {
      throw kvError(`cannot read ${this.bucket.bucket}/${key}`, this.bucket.servers, err)
    }
  }
}
