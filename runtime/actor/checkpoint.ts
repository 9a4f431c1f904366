/**
 * The checkpoint protocol of one actor, weir's central invariant: checkpoint N is one pipe
 * transaction holding the records emitted since N-1, the changelog of the state changed
 * since N-1 and the input positions at the barrier; local RocksDB is written only after
 * that transaction committed, so it is never ahead of the committed truth.
 *
 * The barrier itself only snapshots (the dirty cache entries, the positions): that is the
 * whole processing stall. Encoding the changelog, the pipe commit and the local write run
 * in the background while the next epoch is processed; records emitted meanwhile are held
 * and enter the next transaction when it opens. A processor that publishes after commits
 * (`onCheckpointCommitted`, publish.ts) publishes here too, once the pipe committed. The next
 * barrier waits for all of it, so commits and publishes happen in order and none is
 * attempted after one failed.
 */
import type { Faults } from '../faults.ts'
import { PipeError, WeirError } from '../errors.ts'
import type { PartitionOffset, Pipe, PipeRecord, TransactionalProducer } from '../pipe/pipe.ts'
import { stateCodec } from '../codec.ts'
import { storeKeyBytes } from '../record-keys.ts'
import { ACTOR_PREFIX, CHECKPOINT_RECORD } from './state-keys.ts'
import type { StateStore, StoreWrite } from '../state/state-store.ts'
import type { SealedEntries, WriteCache } from '../state/write-cache.ts'

/**
 * Least and most time the seal encodes between two turns of the event loop, ms. By time, not
 * by count, and as long as what ran in between (the actor's micro-batch): the seal keeps half
 * the thread however slow the micro-batches are, where a fixed count let it lag behind its
 * epoch on a busy machine, and the next barrier waited for it.
 */
const ENCODE_SLICE_MS = 4
const ENCODE_SLICE_MAX_MS = 25

/** What a committed checkpoint reports to its actor. */
export interface CommittedCheckpoint {
  epoch: number
  /** Wall clock when the pipe commit returned. */
  committedAt: number
  /** The ingest horizon the checkpoint carried (-Infinity unknown). */
  ingest: number
  /** Input positions it committed, if they changed since the previous one. */
  positions: PartitionOffset[] | undefined
  /** Time from commit start to pipe commit done, ms. */
  commitMs: number
}

export interface CheckpointerDeps {
  producer: TransactionalProducer
  store: StateStore
  cache: WriteCache
  pipe: Pipe
  faults: Faults
  actor: string
  partition: number
  /** The stage's compacted changelog topic; this actor writes partition `partition`. */
  changelogTopic: string
  /** The stage's output topic: its committed ends are awaited before the actor reports it finished. */
  outputTopic: string
  /** The stage's consumer group, where input positions are also committed. */
  group: string
  /** Where the local store is in the changelog at restore. */
  changelogPosition: number
  /** Called once per committed checkpoint, in order, after its pipe commit (the local write may still run). */
  onCommitted(checkpoint: CommittedCheckpoint): void
}

export class Checkpointer {
  private readonly producer: TransactionalProducer
  /** Counts this actor's checkpoints; pins cache entries until their local write is done. */
  private seq = 0
  private inflight: Promise<void> = Promise.resolve()
  private failure: unknown
  /** Records of the next epoch, held while the previous transaction is being sealed. */
  private deferred: Array<{ topic: string; partition: number; record: PipeRecord }> | undefined
  private localWrite: Promise<void> = Promise.resolve()
  private changelogPosition: number
  /** Offset after the last record this actor committed to each partition of its output. */
  private readonly outputEnds = new Map<number, PartitionOffset>()
  private onFailure: (() => void) | undefined
  private sinceBarrier = 0

  constructor(private readonly deps: CheckpointerDeps) {
    this.producer = deps.producer
    this.changelogPosition = deps.changelogPosition
    this.producer.begin()
  }

  /** Called when a background commit fails, so a waiting run loop wakes up and sees it. */
  onFailed(wake: () => void): void {
    this.onFailure = wake
  }

  /** Rethrows a failed background commit: nothing is committed after a failure. */
  checkFailed(): void {
    if (this.failure !== undefined) throw this.failure
  }

  /** Waits until the previous checkpoint's pipe commit is done (its local write may still run). */
  async ready(): Promise<void> {
    await this.inflight
    this.checkFailed()
  }

  /** Records sent since the newest barrier: what the open transaction (with the held ones) will commit. */
  get sentSinceBarrier(): number {
    return this.sinceBarrier
  }

  /** Sends a record into the open transaction, or holds it while the previous one is sealed. */
  send(topic: string, partition: number, record: PipeRecord): void {
    this.sinceBarrier++
    if (this.deferred !== undefined) this.deferred.push({ topic, partition, record })
    else this.producer.send(topic, partition, record)
  }

  /** Resolves when the pipe can take more records (backpressure of the producer). */
  whenWritable(): Promise<void> {
    return this.producer.whenWritable()
  }

  /**
   * Takes the barrier: snapshots the dirty entries (their values as of now) and starts
   * the background half (changelog, positions, commit, local write, and `publish` if the
   * processor publishes after commits). Call after `ready()`: it waits for the publish too.
   */
  take(epoch: number, positions: PartitionOffset[] | undefined, ingest: number, publish?: (ends: PartitionOffset[]) => Promise<void>, afterLocalWrite?: () => void): void {
    // Pinning uses this actor's own sequence: an early barrier (full cache, first batch)
    // reuses the coordinator's epoch number, and pins must not be released by an older write.
    const seq = ++this.seq
    const dirty = this.deps.cache.seal(seq)
    this.deferred = []
    this.sinceBarrier = 0
    this.inflight = this.sealAndCommit(dirty, positions, epoch, seq, ingest, publish, afterLocalWrite)
    this.inflight.catch((err: unknown) => {
      this.failure = err
      this.onFailure?.()
    })
  }

  /** Encodes the changelog into the sealed transaction in slices, commits it, and opens the next. */
  private async sealAndCommit(dirty: SealedEntries, positions: PartitionOffset[] | undefined, epoch: number, seq: number, ingest: number, publish: ((ends: PartitionOffset[]) => Promise<void>) | undefined, afterLocalWrite: (() => void) | undefined): Promise<void> {
    const { changelogTopic, partition, group } = this.deps
    // Not a record of it encoded inside the barrier: the barrier's stall is the flag flip alone.
    if (dirty.length > 0) await yieldToLoop()
    const now = Date.now()
    const writes: StoreWrite[] = new Array(dirty.length)
    let sliceStart = performance.now()
    let slice = ENCODE_SLICE_MS
    for (let i = 0; i < dirty.length; i++) {
      const d = dirty.at(i)
      const key = storeKeyBytes(d.key)
      const value = d.value === undefined ? null : encodeState(d.key, d.value, this.deps.actor)
      writes[i] = { key, value }
      this.producer.send(changelogTopic, partition, { key, value, timestamp: now })
      // Let the next epoch's records through between slices.
      if ((i & 255) === 255 && performance.now() - sliceStart >= slice) {
        const left = performance.now()
        await yieldToLoop()
        sliceStart = performance.now()
        slice = Math.min(ENCODE_SLICE_MAX_MS, Math.max(ENCODE_SLICE_MS, sliceStart - left))
      }
    }
    if (positions !== undefined) this.producer.sendOffsets(group, positions)
    const commitStart = performance.now()
    const committing = this.producer.commit()
    committing.catch(() => undefined)
    this.producer.begin()
    const held = this.deferred ?? []
    this.deferred = undefined
    for (const h of held) this.producer.send(h.topic, h.partition, h.record)
    await this.complete(committing, writes, epoch, seq, commitStart, positions, ingest, publish, afterLocalWrite)
  }

  /** The background half of a checkpoint: pipe commit, then local state and the publish, then the report. */
  private async complete(committing: Promise<PartitionOffset[]>, writes: StoreWrite[], epoch: number, seq: number, commitStart: number, positions: PartitionOffset[] | undefined, ingest: number, publish: ((ends: PartitionOffset[]) => Promise<void>) | undefined, afterLocalWrite: (() => void) | undefined): Promise<void> {
    const ends = await committing
    const committedAt = Date.now()
    const commitMs = performance.now() - commitStart
    for (const e of ends) {
      if (e.topic === this.deps.outputTopic && (this.outputEnds.get(e.partition)?.offset ?? -1) < e.offset) this.outputEnds.set(e.partition, e)
    }
    this.deps.faults.point('after-pipe-commit')
    const changelogEnd = ends.find((e) => e.topic === this.deps.changelogTopic)?.offset
    if (changelogEnd !== undefined) this.changelogPosition = changelogEnd
    const position = this.changelogPosition
    // One local write at a time; its entries stay pinned in the cache until it is done.
    await this.localWrite
    // `afterLocalWrite` runs before the next checkpoint's write can start: the store then holds exactly this checkpoint.
    if (writes.length > 0) {
      this.localWrite = this.deps.store.apply(writes, position).then(() => {
        this.deps.cache.markFlushed(seq)
        afterLocalWrite?.()
        this.deps.faults.point('after-local-write')
      })
      this.localWrite.catch(() => undefined)
    } else {
      this.deps.cache.markFlushed(seq)
      afterLocalWrite?.()
    }
    // Only the pipe commit makes the staged output the checkpoint's; the next barrier waits for it.
    if (publish !== undefined) await publish(ends)
    this.deps.onCommitted({ epoch, committedAt, ingest, positions, commitMs })
  }

  /** Waits until the background half settled, failed or not: a publish must not outlive the processor. */
  async settled(): Promise<void> {
    await this.inflight.catch(() => undefined)
  }

  /** Waits until every barrier taken so far has committed and reached local state; rethrows a failure. */
  async drain(): Promise<void> {
    await this.inflight
    await this.localWrite
  }

  /**
   * Before an actor reports that it finished, its last output must be readable: on Kafka a
   * transaction's records become visible when its commit markers are written, just after
   * EndTxn returns. A downstream actor told "upstream finished" compares its position
   * with the end offset, which must already include these records.
   */
  async awaitOutputsVisible(): Promise<void> {
    const deadline = Date.now() + 60_000
    for (const { topic, partition, offset } of this.outputEnds.values()) {
      while ((await this.deps.pipe.endOffset(topic, partition)) < offset) {
        if (Date.now() > deadline) throw new PipeError(`committed records of ${topic}/${partition} up to ${offset} are still not visible after 60 s`, { topic, partition, offset, actor: this.deps.actor }, { retriable: true })
        await new Promise((r) => setTimeout(r, 5))
      }
    }
  }

  /** Closes the producer after in-flight work settled (an open transaction is aborted by the pipe). */
  async close(): Promise<void> {
    await this.inflight.catch(() => undefined)
    await this.localWrite.catch(() => undefined)
    await this.producer.close().catch(() => undefined)
  }
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/**
 * A state value for the changelog. One that msgpack refuses got past the check in set
 * because it was frozen by user code (see values.ts); say which state, in weir's words.
 */
function encodeState(cacheKey: string, value: unknown, actor: string): Buffer {
  try {
    return stateCodec.encode(value)
  } catch (err) {
    if (!(err instanceof WeirError) || err.code !== 'WEIR_VALUE_UNSUPPORTED') throw err
    const name = cacheKey.startsWith(ACTOR_PREFIX) ? cacheKey.slice(ACTOR_PREFIX.length) : cacheKey.slice(0, Math.max(0, cacheKey.indexOf('\u0000')))
    const staged = name === CHECKPOINT_RECORD
    const what = staged ? 'the value onCheckpoint returned' : `state '${name}'`
    // The checkpoint record holds what onCheckpoint returned under `staged`.
    const path = staged ? String(err.context.path).replace(/^value\.staged/, 'value') : String(err.context.path)
    throw new WeirError('WEIR_VALUE_UNSUPPORTED', `actor ${actor}: ${what} cannot be stored: ${path} ${String(err.context.reason)}`, { ...err.context, path, actor, state: name }, { cause: err })
  }
}
