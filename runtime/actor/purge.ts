/**
 * Retention by committed position: an actor deletes the records of its input partitions
 * that every stage reading them has committed past. Never past its own committed position
 * (records read since the last commit are read again after a crash), never in topics a
 * user named (they belong to the user).
 */
import type { Logger } from 'pino'
import { describeError } from '../errors.ts'
import { naming } from '../naming.ts'
import type { PartitionOffset, Pipe } from '../pipe/pipe.ts'
import type { Pipeline, StageSpec } from '../api/pipeline.ts'

export interface PurgeInput {
  /** The upstream stage whose output this input reads. */
  stage: StageSpec
  topic: string
  partition: number
}

/**
 * Deletes what every reader of each input committed past. Never rejects: a failure is
 * logged and only delays the purge to the next round. The periodic purge does not wait
 * for the promise; a graceful stop does.
 */
export function purgeConsumed(pipe: Pipe, pipeline: Pipeline, reader: StageSpec, inputs: readonly PurgeInput[], committed: readonly PartitionOffset[] | undefined, log: Logger): Promise<void> {
  if (!pipeline.options.purgeConsumedRecords || committed === undefined) return Promise.resolve()
  const purges: Promise<void>[] = []
  for (const { stage, topic, partition } of inputs) {
    // Topics with a user-given name (topic inputs, named outputs) belong to the user: never purged.
    if (stage.topic !== undefined) continue
    const own = committed.find((o) => o.topic === topic && o.partition === partition)?.offset
    if (own === undefined) continue
    const others = pipeline.downstreamOf(stage.name).filter((s) => s.name !== reader.name)
    purges.push((async () => {
      let upTo = own
      for (const s of others) {
        const theirs = await pipe.committedOffset(naming.group(pipeline.name, s.name), topic, partition)
        upTo = Math.min(upTo, theirs ?? 0)
      }
      if (upTo > 0) await pipe.deleteRecordsBefore(topic, partition, upTo)
    })().catch((err: unknown) => log.warn({ topic, partition, err: describeError(err) }, 'purging consumed records failed; will retry')))
  }
  return Promise.all(purges).then(() => undefined)
}
