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
 *
 * A chain (runtime/api/chains.ts) is one actor with one transaction: each chained stage
 * `follow`s the head's checkpointer with its own store, cache and changelog (a part), and
 * the head's barrier seals every part's changelog into the one commit.
 */
import type { Faults } from '../faults.ts'
import { PipeError, WeirError } from '../errors.ts'
import type { OutgoingRecord, PartitionOffset, Pipe, TransactionalProducer } from '../pipe/pipe.ts'
import { stateCodec } from '../codec.ts'
import { storeKeyBytes } from '../record-keys.ts'
import { ACTOR_PREFIX, CHECKPOINT_RECORD } from './state-keys.ts'
import type { StateStore } from '../state/state-store.ts'
import { WriteArena } from '../state/write-arena.ts'
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

/** One stage's state in a checkpoint: the head's own, or a chained stage's (`Checkpointer.follow`). */
interface Part {
  store: StateStore
  cache: WriteCache
  actor: string
  changelogTopic: string
  outputTopic: string
  changelogPosition: number
  localWrite: Promise<void>
  /** Offset after the last record this stage committed to each partition of its output. */
  outputEnds: Map<number, PartitionOffset>
  /** The ingest horizon of the stage's next checkpoint (set by `ChainedCheckpoints.cut`). */
  ingest: number
  onCommitted(checkpoint: CommittedCheckpoint): void
}

/** What a chained stage gives the head's checkpointer: its own state, changelog and output. */
export type FollowerDeps = Pick<CheckpointerDeps, 'store' | 'cache' | 'actor' | 'changelogTopic' | 'outputTopic' | 'changelogPosition' | 'onCommitted'>

/** What an actor's run loop uses of its checkpoints; a chained stage's go through its head's (ChainedCheckpoints). */
export interface ActorCheckpoints {
  onFailed(wake: () => void): void
  checkFailed(): void
  ready(): Promise<void>
  /** A checkpoint taken is still being sealed or committed: the next barrier would wait for it. */
  readonly sealing: boolean
  readonly sentSinceBarrier: number
  send(topic: string, partition: number, record: OutgoingRecord): void
  whenWritable(): Promise<void>
  drain(): Promise<void>
  settled(): Promise<void>
  awaitOutputsVisible(): Promise<void>
  close(): Promise<void>
}

export class Checkpointer implements ActorCheckpoints {
  private readonly producer: TransactionalProducer
  /** Counts this actor's checkpoints; pins cache entries until their local write is done. */
  private seq = 0
  private inflight: Promise<void> = Promise.resolve()
  private sealingNow = false
  private failure: unknown
  /** Records of the next epoch, held while the previous transaction is being sealed. */
  private deferred: Array<{ topic: string; partition: number; record: OutgoingRecord }> | undefined
  /** The actor's own state first, then each chained stage's, in chain order. */
  private readonly parts: Part[]
  private onFailure: (() => void) | undefined
  private sinceBarrier = 0

  constructor(private readonly deps: CheckpointerDeps) {
    this.producer = deps.producer
    this.parts = [partOf(deps)]
    this.producer.begin()
  }

  /**
   * A chained stage's checkpoints: its records go into this actor's transaction, and every
   * barrier this actor takes seals the stage's changelog into the same commit.
   */
  follow(deps: FollowerDeps): ChainedCheckpoints {
    const part = partOf(deps)
    this.parts.push(part)
    return new ChainedCheckpoints(this, part)
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

  get sealing(): boolean {
    return this.sealingNow
  }

  /** Records sent since the newest barrier: what the open transaction (with the held ones) will commit. */
  get sentSinceBarrier(): number {
    return this.sinceBarrier
  }

  /** Sends a record into the open transaction, or holds it while the previous one is sealed. */
  send(topic: string, partition: number, record: OutgoingRecord): void {
    this.sinceBarrier++
    if (this.deferred !== undefined) this.deferred.push({ topic, partition, record })
    else this.producer.send(topic, partition, record)
  }

  /** Resolves when the pipe can take more records (backpressure of the producer). */
  whenWritable(): Promise<void> {
    return this.producer.whenWritable()
  }

  /**
   * Takes the barrier: snapshots the dirty entries of every part (their values as of now)
   * and starts the background half (changelogs, positions, commit, local writes, and
   * `publish` if the processor publishes after commits). Call after `ready()`, and after
   * each chained stage took its side of the barrier (`ChainedCheckpoints.cut`).
   */
  take(epoch: number, positions: PartitionOffset[] | undefined, ingest: number, publish?: (ends: PartitionOffset[]) => Promise<void>, afterLocalWrite?: () => void): void {
    // Pinning uses this actor's own sequence: an early barrier (full cache, first batch)
    // reuses the coordinator's epoch number, and pins must not be released by an older write.
    const seq = ++this.seq
    this.parts[0]!.ingest = ingest
    const cuts = this.parts.map((part) => ({ part, dirty: part.cache.seal(seq), ingest: part.ingest }))
    this.deferred = []
    this.sinceBarrier = 0
    // take() follows ready(), so one checkpoint at most is in flight when this is set.
    this.sealingNow = true
    this.inflight = this.sealAndCommit(cuts, positions, epoch, seq, publish, afterLocalWrite)
    this.inflight.then(
      () => {
        this.sealingNow = false
      },
      (err: unknown) => {
        this.sealingNow = false
        this.failure = err
        this.onFailure?.()
      },
    )
  }

  /** Encodes the changelogs into the sealed transaction in slices, commits it, and opens the next. */
  private async sealAndCommit(cuts: Cut[], positions: PartitionOffset[] | undefined, epoch: number, seq: number, publish: ((ends: PartitionOffset[]) => Promise<void>) | undefined, afterLocalWrite: (() => void) | undefined): Promise<void> {
    const { partition, group } = this.deps
    // Not a record of it encoded inside the barrier: the barrier's stall is the flag flip alone.
    if (cuts.some((c) => c.dirty.length > 0)) await yieldToLoop()
    const now = Date.now()
    let encoded = 0
    let sliceStart = performance.now()
    let slice = ENCODE_SLICE_MS
    const writes: WriteArena[] = []
    for (const { part, dirty } of cuts) {
      const partWrites = new WriteArena(Math.max(1024, dirty.length * 48), Math.max(16, dirty.length))
      for (let i = 0; i < dirty.length; i++) {
        const d = dirty.at(i)
        if (d === undefined) continue
        const key = storeKeyBytes(d.key)
        const value = d.value === undefined ? null : encodeState(d.key, d.value, part.actor)
        // Both copy what they are given: the key and value Buffers die young.
        partWrites.add(key, value)
        this.producer.send(part.changelogTopic, partition, { key, value, timestamp: now })
        // Let the next epoch's records through between slices.
        if ((++encoded & 255) === 0 && performance.now() - sliceStart >= slice) {
          const left = performance.now()
          await yieldToLoop()
          sliceStart = performance.now()
          slice = Math.min(ENCODE_SLICE_MAX_MS, Math.max(ENCODE_SLICE_MS, sliceStart - left))
        }
      }
      writes.push(partWrites)
    }
    if (positions !== undefined) this.producer.sendOffsets(group, positions)
    const commitStart = performance.now()
    const committing = this.producer.commit()
    committing.catch(() => undefined)
    this.producer.begin()
    const held = this.deferred ?? []
    this.deferred = undefined
    for (const h of held) this.producer.send(h.topic, h.partition, h.record)
    await this.complete(committing, cuts, writes, epoch, seq, commitStart, positions, publish, afterLocalWrite)
  }

  /** The background half of a checkpoint: pipe commit, then local state and the publish, then the reports. */
  private async complete(committing: Promise<PartitionOffset[]>, cuts: Cut[], writes: WriteArena[], epoch: number, seq: number, commitStart: number, positions: PartitionOffset[] | undefined, publish: ((ends: PartitionOffset[]) => Promise<void>) | undefined, afterLocalWrite: (() => void) | undefined): Promise<void> {
    const ends = await committing
    const committedAt = Date.now()
    const commitMs = performance.now() - commitStart
    for (const { part } of cuts) {
      for (const e of ends) {
        if (e.topic === part.outputTopic && (part.outputEnds.get(e.partition)?.offset ?? -1) < e.offset) part.outputEnds.set(e.partition, e)
      }
    }
    this.deps.faults.point('after-pipe-commit')
    for (const [i, { part }] of cuts.entries()) {
      const changelogEnd = ends.find((e) => e.topic === part.changelogTopic)?.offset
      if (changelogEnd !== undefined) part.changelogPosition = changelogEnd
      const position = part.changelogPosition
      const partWrites = writes[i]!
      // One local write at a time per store; its entries stay pinned in the cache until it is done.
      await part.localWrite
      // The head's `afterLocalWrite` runs before its next checkpoint's write can start: the store then holds exactly this checkpoint.
      const after = i === 0 ? afterLocalWrite : undefined
      if (partWrites.length > 0) {
        part.localWrite = part.store.apply(partWrites, position).then(() => {
          part.cache.markFlushed(seq)
          after?.()
          this.deps.faults.point('after-local-write')
        })
        part.localWrite.catch(() => undefined)
      } else {
        part.cache.markFlushed(seq)
        after?.()
      }
    }
    // Only the pipe commit makes the staged output the checkpoint's; the next barrier waits for it.
    if (publish !== undefined) await publish(ends)
    // Chained stages first: the head's report acks the epoch for the whole chain.
    for (let i = cuts.length - 1; i >= 0; i--) {
      const { part, ingest } = cuts[i]!
      part.onCommitted({ epoch, committedAt, ingest, positions: i === 0 ? positions : undefined, commitMs })
    }
  }

  /** Waits until the background half settled, failed or not: a publish must not outlive the processor. */
  async settled(): Promise<void> {
    await this.inflight.catch(() => undefined)
  }

  /** Waits until every barrier taken so far has committed and reached local state (every part's); rethrows a failure. */
  async drain(): Promise<void> {
    await this.inflight
    for (const part of this.parts) await part.localWrite
  }

  /**
   * Before an actor reports that it finished, its last output must be readable: on Kafka a
   * transaction's records become visible when its commit markers are written, just after
   * EndTxn returns. A downstream actor told "upstream finished" compares its position
   * with the end offset, which must already include these records. A chain's actor waits
   * for the outputs of every stage in it.
   */
  async awaitOutputsVisible(): Promise<void> {
    const deadline = Date.now() + 60_000
    for (const part of this.parts) {
      for (const { topic, partition, offset } of part.outputEnds.values()) {
        while ((await this.deps.pipe.endOffset(topic, partition)) < offset) {
          if (Date.now() > deadline) throw new PipeError(`committed records of ${topic}/${partition} up to ${offset} are still not visible after 60 s`, { topic, partition, offset, actor: this.deps.actor }, { retriable: true })
          await new Promise((r) => setTimeout(r, 5))
        }
      }
    }
  }

  /** Closes the producer after in-flight work settled (an open transaction is aborted by the pipe). */
  async close(): Promise<void> {
    await this.inflight.catch(() => undefined)
    for (const part of this.parts) await part.localWrite.catch(() => undefined)
    await this.producer.close().catch(() => undefined)
  }
}

interface Cut {
  part: Part
  dirty: SealedEntries
  ingest: number
}

function partOf(deps: FollowerDeps): Part {
  return { store: deps.store, cache: deps.cache, actor: deps.actor, changelogTopic: deps.changelogTopic, outputTopic: deps.outputTopic, changelogPosition: deps.changelogPosition, localWrite: Promise.resolve(), outputEnds: new Map(), ingest: -Infinity, onCommitted: deps.onCommitted }
}

/**
 * A chained stage's checkpoints: everything goes through the head's checkpointer, whose
 * barriers commit this stage's changelog together with the head's (one transaction).
 */
export class ChainedCheckpoints implements ActorCheckpoints {
  constructor(private readonly head: Checkpointer, private readonly part: Part) {}

  /** The stage took its side of the barrier: the head's next `take` carries this ingest horizon. */
  cut(ingest: number): void {
    this.part.ingest = ingest
  }

  onFailed(): void {
    // The head's run loop is the one that waits, and the head's checkpointer wakes it.
  }
  checkFailed(): void {
    this.head.checkFailed()
  }
  ready(): Promise<void> {
    return this.head.ready()
  }
  get sealing(): boolean {
    return this.head.sealing
  }
  get sentSinceBarrier(): number {
    return this.head.sentSinceBarrier
  }
  send(topic: string, partition: number, record: OutgoingRecord): void {
    this.head.send(topic, partition, record)
  }
  whenWritable(): Promise<void> {
    return this.head.whenWritable()
  }
  drain(): Promise<void> {
    return this.head.drain()
  }
  settled(): Promise<void> {
    return this.head.settled()
  }
  awaitOutputsVisible(): Promise<void> {
    return this.head.awaitOutputsVisible()
  }
  async close(): Promise<void> {
    // The head closes the producer, after every part's local write.
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
