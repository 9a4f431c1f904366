/**
 * The post-commit half of the checkpoint protocol: once checkpoint N committed in the pipe,
 * the processor's `onCheckpointCommitted` publishes what it staged for N (retried, then the
 * actor fails), and at start it publishes the newest committed checkpoint again. Checkpoint
 * N+1 commits only after N was published (checkpoint.ts awaits it before the next barrier),
 * so the newest committed checkpoint is the only one that can still be unpublished.
 */
import type { Logger } from 'pino'
import type { CommitContext, LifecycleContext, Processor } from '../api/processor.ts'
import { PublishError, ValueError, WeirError, describeError } from '../errors.ts'
import type { Faults } from '../faults.ts'
import type { PartitionOffset } from '../pipe/pipe.ts'
import type { WriteCache } from '../state/write-cache.ts'
import { freezeStateValue } from '../values.ts'
import { ACTOR_PREFIX, CHECKPOINT_RECORD } from './state-keys.ts'

/** What a checkpoint stores for its post-commit hook (actor state CHECKPOINT_RECORD). */
export interface CheckpointRecord {
  checkpoint: number
  epoch: number
  /** What `onCheckpoint` returned; absent when it returned nothing. */
  staged?: unknown
}

/** Attempts of one publish before the actor fails; the waits between them double from BACKOFF_MS. */
const ATTEMPTS = 5
const BACKOFF_MS = 200

export interface PublisherDeps {
  processor: Processor<unknown, unknown>
  cache: WriteCache
  lifecycle: LifecycleContext
  faults: Faults
  log: Logger
  actor: string
  /** The data topics the stage writes (its output, side outputs, keyed streams): what `outputPositions` lists. */
  outputTopics: ReadonlySet<string>
  /** True once the actor was abandoned (a crash): retrying is pointless then. */
  abandoned(): boolean
}

export class Publisher {
  constructor(private readonly deps: PublisherDeps) {}

  /** The record the restored state holds: the newest committed checkpoint, if any committed with the hook. */
  restored(): CheckpointRecord | undefined {
    return this.deps.cache.get(ACTOR_PREFIX, CHECKPOINT_RECORD)?.value as CheckpointRecord | undefined
  }

  /**
   * At the barrier: puts the checkpoint's record into the state it commits, and returns the
   * publish to run once the pipe committed it. What `onCheckpoint` returned is state: checked
   * and frozen as a state value is.
   */
  stage(checkpoint: number, epoch: number, staged: unknown): (ends: readonly PartitionOffset[]) => Promise<void> {
    const { cache, lifecycle, actor } = this.deps
    const checked = freezeStateValue(staged)
    if (!('value' in checked)) throw new ValueError('the value onCheckpoint returned', checked.problem.reason, { stage: lifecycle.stage, actor, path: checked.problem.path })
    const record: CheckpointRecord = staged === undefined ? { checkpoint, epoch } : { checkpoint, epoch, staged: checked.value }
    cache.set(cache.getOrCreate(ACTOR_PREFIX, CHECKPOINT_RECORD, true), record)
    return (ends) => this.publish(record, false, ends)
  }

  /** Runs `onCheckpointCommitted` for `record`, retrying with backoff; throws PublishError when it keeps failing. */
  async publish(record: CheckpointRecord, recovering: boolean, ends: readonly PartitionOffset[] = []): Promise<void> {
    const { processor, lifecycle, faults, log } = this.deps
    faults.point('before-publish')
    // No scope phase is set: the publish runs beside the next epoch's records, so a state
    // handle here throws ScopeError, or acts on a record in flight; the contract forbids both.
    const outputPositions = ends.filter((e) => this.deps.outputTopics.has(e.topic)).map((e) => ({ topic: e.topic, partition: e.partition, offset: e.offset }))
    const commit: CommitContext = { ...lifecycle, checkpoint: record.checkpoint, epoch: record.epoch, staged: record.staged, recovering, outputPositions }
    for (let attempt = 1; ; attempt++) {
      try {
        await processor.onCheckpointCommitted?.(commit)
        break
      } catch (err) {
        const retriable = isRetriable(err)
        if (!retriable || attempt >= ATTEMPTS || this.deps.abandoned()) throw this.failed(err, record, attempt, retriable)
        const delayMs = BACKOFF_MS * 2 ** (attempt - 1)
        log.warn({ checkpoint: record.checkpoint, epoch: record.epoch, attempt, delayMs, err: describeError(err) }, 'publishing a committed checkpoint failed; retrying')
        await new Promise((r) => setTimeout(r, delayMs))
      }
    }
    faults.point('after-publish')
  }

  private failed(err: unknown, record: CheckpointRecord, attempts: number, retriable: boolean): unknown {
    // A non-retriable weir error (a corrupted file, say) says what is wrong better than a wrapper.
    if (err instanceof WeirError && !err.retriable) return err
    const { actor, lifecycle } = this.deps
    return new PublishError(
      `${actor}: publishing checkpoint ${record.checkpoint} failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${(err as Error)?.message ?? String(err)}`,
      { actor, stage: lifecycle.stage, partition: lifecycle.partition, checkpoint: record.checkpoint, epoch: record.epoch, attempts },
      { retriable, cause: err },
    )
  }
}

/** I/O and service errors are worth retrying; a bug in the hook (TypeError, RangeError, …) is not. */
function isRetriable(err: unknown): boolean {
  if (err instanceof WeirError) return err.retriable
  return !(err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError)
}
