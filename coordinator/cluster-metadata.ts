/**
 * The leader's durable metadata in the cluster's NATS KV bucket, beside the lease: per
 * pipeline its members, assignment generation, placement, standbys, epochs and finished
 * actors, so a new leader continues where the old one stopped. Upholds the "a deposed leader cannot overwrite
 * its successor" part of cluster mode: every write carries the writer's term and is refused
 * when the lease or the stored metadata already carries a newer one.
 *
 * @example
 * const meta = await ClusterMetadata.open({ nc, cluster: 'prod' })
 * lease.on('elected', (term) => void meta.claim(term).then((m) => startCoordinators(m.pipelines)))
 * await meta.putPipelines(lease.term, { wordcount: coordinator.metadata() })
 */
import type { KvEntry } from '@nats-io/kv'
import type { Logger } from 'pino'
import { z } from 'zod'
import { ConfigError, WeirError } from '../runtime/errors.ts'
import { createLogger } from '../runtime/log.ts'
import { actorFailure, pipelineShape } from '../runtime/control/messages.ts'
import { isCasConflict, kvError, LeaderFencedError, openClusterBucket, parseLease, type ClusterBucket, type KvTarget } from './leader-lease.ts'

/** What a leader keeps of one pipeline, so its successor continues from there. */
export const pipelineMetadata = z.object({
  fingerprint: z.string().min(1),
  shape: pipelineShape,
  /** Workers of the pipeline. */
  members: z.array(z.string()),
  /** Newest assignment generation; workers ignore assignments from older ones. */
  generation: z.number().int().nonnegative(),
  /** Actor id → worker. */
  assignment: z.record(z.string()),
  /** Actor id → workers keeping a standby replica. */
  standbys: z.record(z.array(z.string())).default({}),
  /** Last checkpoint epoch started. */
  epoch: z.number().int().nonnegative(),
  /** Last epoch every live actor committed. */
  completedEpoch: z.number().int().nonnegative(),
  /** Actors that reached the end of their input. */
  finished: z.array(z.string()).default([]),
  /**
   * Actors in a planned move still waiting for their old owner's release report (their
   * target is in `assignment`): a successor waits for it too, at most its release timeout.
   */
  releasing: z.record(z.object({ from: z.string(), generation: z.number().int().nonnegative() })).default({}),
  /**
   * Actors that failed for good, with the workers they failed on: a successor keeps not
   * placing them there, and keeps the quarantined ones unassigned until cleared.
   */
  failures: z.record(actorFailure.extend({ quarantined: z.boolean() })).default({}),
})
export type PipelineMetadata = z.infer<typeof pipelineMetadata>

/** What a leader needs to continue where the previous one stopped. `v` versions the shape. */
export interface ClusterMetadataRecord {
  v: 1
  /** Term of the leader that wrote this. */
  term: number
  /** Pipeline name → its membership, placement and epochs. */
  pipelines: Record<string, PipelineMetadata>
}

const metadataRecord = z.object({ v: z.literal(1), term: z.number().int().nonnegative(), pipelines: z.record(pipelineMetadata).default({}) })

export interface ClusterMetadataOptions extends KvTarget {
  /** Lease key whose term fences writes; the same as LeaderLease's `key`. */
  leaseKey?: string
  /** Metadata key in the bucket. */
  key?: string
}

/** Compare-and-set attempts before giving up; each retry means another write of our own term raced us. */
const MAX_ATTEMPTS = 5

function empty(): ClusterMetadataRecord {
  return { v: 1, term: 0, pipelines: {} }
}

function parseMetadata(entry: KvEntry | null): ClusterMetadataRecord | null {
  if (entry === null || entry.operation !== 'PUT') return null
  let raw: unknown
  try {
    raw = entry.json<unknown>()
  } catch {
    // Not JSON: refused below like any other unknown shape.
  }
  const parsed = metadataRecord.safeParse(raw)
  // Never treat an unreadable record as empty: a leader would then overwrite real state.
  if (!parsed.success) throw new WeirError('WEIR_METADATA_INVALID', `cluster metadata has an unknown shape (${parsed.error.issues[0]?.path.join('.') ?? ''}: ${parsed.error.issues[0]?.message ?? 'not JSON'}); was it written by a newer weir?`, { revision: entry.revision })
  return parsed.data
}

/**
 * Reads and writes the cluster metadata. Writes are read-modify-write with a compare-and-set
 * on the revision, and take the writer's term: a term older than the lease's or the stored
 * one throws LeaderFencedError.
 *
 * @example
 * const meta = await ClusterMetadata.open({ servers: ['nats://127.0.0.1:4222'], cluster: 'prod' })
 * await meta.putPipelines(term, { wordcount: coordinator.metadata() })
 * const { pipelines } = await meta.read()
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

  /** Stores what the leader of `term` knows of these pipelines (others are kept as they are). */
  putPipelines(term: number, pipelines: Record<string, PipelineMetadata>): Promise<ClusterMetadataRecord> {
    return this.update(term, (m) => ({ ...m, pipelines: { ...m.pipelines, ...pipelines } }))
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
