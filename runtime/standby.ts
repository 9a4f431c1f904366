/**
 * A standby replica: a warm copy of another worker's actor state, kept by tailing the
 * actor's changelog (read_committed) into a local RocksDB at the path the actor itself
 * would use. When the actor moves here, its restore finds the store at most a moment
 * behind and replays only that tail, so failover does not depend on state size (Kafka
 * Streams' standby tasks). A replica never writes to the pipe.
 *
 * A replica of a stage with views also answers stale reads of them (`viewSubjects.standby`)
 * from a snapshot pinned only where its store holds exactly one committed checkpoint, never
 * part of one, though a poll of the changelog may end anywhere inside a checkpoint's
 * records (CheckpointBoundaries says where the boundaries are).
 *
 * @example
 * const replica = new StandbyReplica({ pipe, pipeline, spec, partition: 3, dataDir, log })
 * await replica.start()
 * const stale = await replica.queryView({ v: 1, view: 'counts', partition: 3, keys: ['ant'], waitMs: 0, maxBytes: 1 << 20 })
 * // … the actor is assigned here:
 * await replica.stop()
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ACTOR_PREFIX, INPUT_POSITIONS, VIEW_EPOCH } from './actor/state-keys.ts'
import { stateCodec } from './codec.ts'
import { describeError, WeirError } from './errors.ts'
import { Faults } from './faults.ts'
import type { PartitionReader, Pipe, StoredRecord } from './pipe/pipe.ts'
import { type Pipeline, type StageSpec } from './api/pipeline.ts'
import { naming } from './naming.ts'
import { storeKeyBytes } from './record-keys.ts'
import { replayChangelog } from './state/changelog.ts'
import { StateStore, type StoreWrite } from './state/state-store.ts'
import { CommittedReads, type CommittedMeta } from './views/committed-reads.ts'
import { answerView, type ViewReply, type ViewRequest } from './views/view-protocol.ts'

export interface StandbyDeps {
  pipe: Pipe
  pipeline: Pipeline
  spec: StageSpec
  partition: number
  dataDir: string
  log: Logger
  /** Changelog records applied per local write. Default 10 000. */
  batch?: number
}

/** Changelog records applied per local write. */
const BATCH = 10_000
/** Stored keys of the entries that say which checkpoint a store holds. */
const EPOCH_KEY = storeKeyBytes(ACTOR_PREFIX + VIEW_EPOCH)
const POSITIONS_KEY = storeKeyBytes(ACTOR_PREFIX + INPUT_POSITIONS)
/** Least time between two asks for the changelog's end while the store holds part of a checkpoint. */
const END_CHECK_MS = 500

/** The replica holds no whole checkpoint yet (it just started): the actor, or a later ask, answers. */
export class StandbyNotReadyError extends WeirError {
  constructor(actor: string) {
    super('WEIR_VIEW_STANDBY_WARMING', `the standby replica of ${actor} holds no whole checkpoint yet`, { actor }, { retriable: true })
  }
}

/**
 * Finds the checkpoint boundaries in a changelog read in order. Each checkpoint of a view
 * stage ends with its `#epoch` record: the actor sets that entry last at the barrier, and
 * the checkpoint writes its dirty entries in the order they were first dirtied since the
 * previous barrier (write-cache.ts seal). So if the store held a whole checkpoint and
 * every record since was applied, it holds exactly checkpoint N right after N's `#epoch`.
 *
 * "Every record since" is checked: compaction removes records a newer one of their key
 * supersedes, and a log cleaner part-way through a pass has removed old records whose
 * successor lies far ahead, while the `#epoch` records near the reader are still there; a
 * replica reading that part would hold a state no checkpoint had. A missing offset (but for
 * the one marker a pipe writes after each transaction, `markerWidth`: 1 on Kafka, 0 on the
 * embedded log) makes the boundaries untrusted until the replica has read to the
 * changelog's end (`trust`): there it holds the newest checkpoint whatever was compacted.
 * Aborted transactions leave gaps too; the cost is a later pin, never a wrong one.
 *
 * @example
 * const b = new CheckpointBoundaries(1, { epoch: 0, positions: {}, committedAt: 0 })
 * b.trust(reader.position)      // the store holds a whole checkpoint, everything below applied
 * const found = b.scan(batch)   // { index, meta } of the batch's last whole checkpoint, or undefined
 */
export class CheckpointBoundaries {
  private previousOffset: number | undefined
  private previousWasEpoch = false
  /** The store held a whole checkpoint, and no offset went missing since. */
  private trusted = false
  /** Positions of the newest `#epoch` read (they are written only when they changed). */
  private settled: Record<string, number>
  /** Positions written after the newest `#epoch` read: they belong to the next one. */
  private pending: Record<string, number> | undefined
  private epoch: number
  private epochAt: number
  /** Checkpoints not taken as boundaries: read while an offset before them was missing. */
  passedOver = 0

  /** `applied`: what the store held before this reader's first record (its own `#epoch` and `#positions`). */
  constructor(private readonly markerWidth: number, applied: CommittedMeta) {
    this.settled = applied.positions
    this.epoch = applied.epoch
    this.epochAt = applied.committedAt
  }

  /** What everything read so far reflects (a whole checkpoint's only at a boundary). */
  get applied(): CommittedMeta {
    return { epoch: this.epoch, positions: this.pending ?? this.settled, committedAt: this.epochAt }
  }

  get isTrusted(): boolean {
    return this.trusted
  }

  /** The store holds a whole checkpoint, with every record below offset `next` applied. */
  trust(next: number): void {
    this.trusted = true
    this.previousOffset = next - 1
    this.previousWasEpoch = false
  }

  /** The index of the last whole checkpoint's `#epoch` record in `batch`, and what it reflects. */
  scan(batch: readonly StoredRecord[]): { index: number; meta: CommittedMeta } | undefined {
    let found: { index: number; meta: CommittedMeta } | undefined
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i]!
      const allowed = 1 + (this.previousWasEpoch ? this.markerWidth : 0)
      if (this.previousOffset === undefined || r.offset - this.previousOffset > allowed) this.trusted = false
      this.previousOffset = r.offset
      this.previousWasEpoch = false
      // Runtime entries start with ACTOR_PREFIX; keyed state never does.
      if (r.key === null || r.key[0] !== EPOCH_KEY[0]) continue
      if (r.key.equals(POSITIONS_KEY)) {
        this.pending = decodePositions(r.value) ?? this.pending
      } else if (r.key.equals(EPOCH_KEY)) {
        this.previousWasEpoch = true
        this.settled = this.pending ?? this.settled
        this.pending = undefined
        this.epoch = decodeEpoch(r.value) ?? this.epoch
        this.epochAt = r.timestamp
        if (this.trusted) found = { index: i, meta: this.applied }
        else this.passedOver++
      }
    }
    return found
  }
}

export class StandbyReplica {
  readonly id: string
  private store: StateStore | undefined
  private reader: PartitionReader | undefined
  private stopping = false
  private loop: Promise<void> = Promise.resolve()
  private readonly log: Logger
  private readonly topic: string
  private readonly path: string
  private readonly batch: number
  /** Changelog offset the local copy reflects. */
  position = 0
  /** Reads of the newest whole checkpoint applied; undefined until the store first held one. */
  private views: CommittedReads | undefined
  private boundaries: CheckpointBoundaries | undefined
  /** Records applied since the store last held a whole checkpoint. */
  private partial = false
  private endCheckedAt = 0

  constructor(private readonly deps: StandbyDeps) {
    this.id = naming.actor(deps.spec.name, deps.partition)
    this.log = deps.log.child({ standby: this.id })
    this.topic = naming.changelog(deps.pipeline.name, deps.spec.name)
    // The same path as the actor's own store: promotion opens what the replica kept warm.
    this.path = join(deps.dataDir, 'state', deps.spec.name, String(deps.partition))
    this.batch = deps.batch ?? BATCH
  }

  /** Whether it answers view requests (its stage serves views). */
  get servesViews(): boolean {
    return this.deps.spec.views.length > 0
  }

  /** The stage whose partition it keeps warm. */
  get stage(): string {
    return this.deps.spec.name
  }

  /** The stage partition it keeps warm. */
  get partition(): number {
    return this.deps.partition
  }

  private starting: Promise<void> | undefined

  /** Catches up with the changelog, then keeps tailing it in the background. */
  start(): Promise<void> {
    this.starting ??= this.open()
    return this.starting
  }

  private async open(): Promise<void> {
    this.store = await StateStore.open(this.path)
    const replayed = await replayChangelog({
      pipe: this.deps.pipe,
      topic: this.topic,
      partition: this.deps.partition,
      store: this.store,
      storePath: this.path,
      log: this.log,
      faults: Faults.none(),
      reopen: async () => {
        await this.store!.close()
        StateStore.destroy(this.path)
        this.store = await StateStore.open(this.path)
        return this.store
      },
    })
    this.position = replayed.position
    if (this.stopping) return
    if (this.servesViews) await this.openViews()
    this.reader = await this.deps.pipe.reader(this.topic, this.deps.partition, this.position)
    this.loop = this.tail().catch((err: unknown) => {
      this.views?.close()
      // Stopping closes the reader under its poll.
      if (this.stopping) return
      // A standby that falls over costs a slower failover, never correctness: the actor restores from the changelog.
      this.log.warn({ err: describeError(err) }, 'standby replica stopped tailing its changelog')
    })
    this.log.debug({ position: this.position, replayed: replayed.records, serving: this.views !== undefined }, 'standby replica warm')
  }

  /**
   * After the catch-up: what the store holds, and whether that is a whole checkpoint (the
   * replay reads to an end it asked for first, so it may stop inside a transaction).
   */
  private async openViews(): Promise<void> {
    const [epoch, positions] = await this.store!.getMany([EPOCH_KEY, POSITIONS_KEY])
    // Kafka writes a commit marker (one offset) after each transaction's records in a partition.
    this.boundaries = new CheckpointBoundaries(this.deps.pipe.kind === 'kafka' ? 1 : 0, { epoch: decodeEpoch(epoch) ?? 0, positions: decodePositions(positions) ?? {}, committedAt: Date.now() })
    this.partial = true
    await this.pinIfWhole(this.position)
  }

  private async tail(): Promise<void> {
    while (!this.stopping) {
      const batch = await this.reader!.poll(this.batch, 250)
      if (this.stopping) break
      const end = this.reader!.position
      const boundary = this.boundaries?.scan(batch)
      if (boundary === undefined) {
        if (batch.length > 0) await this.apply(batch, end)
        this.partial ||= batch.length > 0 && this.servesViews
        // Idle, or boundaries untrusted: only the changelog's end says the store is whole.
        if (batch.length === 0 || this.boundaries?.isTrusted === false) await this.pinIfWhole(end)
        continue
      }
      // Up to the boundary, pin, then the rest (part of the next checkpoint).
      const rest = batch.slice(boundary.index + 1)
      await this.apply(batch.slice(0, boundary.index + 1), rest.length > 0 ? rest[0]!.offset : end)
      this.pin(boundary.meta)
      if (rest.length > 0) {
        await this.apply(rest, end)
        this.partial = true
      }
    }
  }

  private async apply(records: StoredRecord[], position: number): Promise<void> {
    const writes: StoreWrite[] = records.map((r) => ({ key: r.key!, value: r.value }))
    await this.store!.apply(writes, position)
    this.position = position
  }

  /** The store holds exactly the checkpoint `meta` describes: readers see it from now on. */
  private pin(meta: CommittedMeta): void {
    this.partial = false
    if (this.stopping) return
    if (this.views === undefined) this.views = new CommittedReads(this.store!, meta, this.id)
    else this.views.pin(meta)
  }

  /**
   * Read to the changelog's end (`read`: the offset below which everything is applied): a
   * read_committed reader never stops inside a transaction there, so the store holds a whole
   * checkpoint, the newest, also if it read compacted parts (compaction keeps each key's newest).
   */
  private async pinIfWhole(read: number): Promise<void> {
    if (!this.partial || this.stopping || this.boundaries === undefined || Date.now() - this.endCheckedAt < END_CHECK_MS) return
    this.endCheckedAt = Date.now()
    if (read < (await this.deps.pipe.endOffset(this.topic, this.deps.partition))) return
    this.boundaries.trust(read)
    this.pin(this.boundaries.applied)
  }

  /**
   * Answers a view request from the newest whole checkpoint this replica applied: a stale
   * read (the actor may be ahead), marked `standby: true`.
   */
  async queryView(request: ViewRequest): Promise<ViewReply> {
    const view = this.deps.spec.views.find((v) => v.name === request.view)
    if (view === undefined) throw new WeirError('WEIR_VIEW_UNKNOWN', `stage ${this.deps.spec.name} serves no view '${request.view}'`, { stage: this.deps.spec.name, actor: this.id, view: request.view })
    if (this.views === undefined) throw new StandbyNotReadyError(this.id)
    return answerView(this.views, view, request, this.id, true)
  }

  /** Checkpoints it did not pin because an offset before their end was missing (CheckpointBoundaries). */
  get checkpointsPassedOver(): number {
    return this.boundaries?.passedOver ?? 0
  }

  /** Changelog records not applied yet. */
  async lag(): Promise<number> {
    return Math.max(0, (await this.deps.pipe.endOffset(this.topic, this.deps.partition)) - this.position)
  }

  /** Stops tailing and closes the store, so the actor can open it. */
  async stop(): Promise<void> {
    this.stopping = true
    // Readers waiting for a bound go elsewhere; a read under way finishes, or says the same.
    this.views?.close()
    // Never close the store under a catch-up still running.
    await this.starting?.catch(() => undefined)
    this.reader?.close()
    await this.loop
    await this.store?.close().catch(() => undefined)
    this.store = undefined
  }
}

function decodeEpoch(raw: Buffer | null | undefined): number | undefined {
  if (raw === null || raw === undefined) return undefined
  const v = stateCodec.decode(raw)
  return typeof v === 'number' ? v : undefined
}

function decodePositions(raw: Buffer | null | undefined): Record<string, number> | undefined {
  if (raw === null || raw === undefined) return undefined
  const v = stateCodec.decode(raw)
  return typeof v === 'object' && v !== null ? { ...(v as Record<string, number>) } : undefined
}
