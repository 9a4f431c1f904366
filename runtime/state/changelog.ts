/**
 * Changelog replay: brings an actor's local RocksDB up to the committed truth. The store
 * records the changelog offset it reflects; replay applies the committed changelog from
 * there to the end. A store ahead of the changelog, or behind its retained start, is
 * wiped and rebuilt from the start (StateCorruptedError says why in the log).
 */
import type { Logger } from 'pino'
import { StateCorruptedError } from '../errors.ts'
import type { Faults } from '../faults.ts'
import type { Pipe } from '../pipe/pipe.ts'
import { readRange } from '../pipe/read-range.ts'
import type { StateStore, StoreWrite } from './state-store.ts'

export interface ReplayArgs {
  pipe: Pipe
  topic: string
  partition: number
  store: StateStore
  storePath: string
  log: Logger
  faults: Faults
  /** Wipes the local store and opens an empty one. */
  reopen(): Promise<StateStore>
}

const CHUNK = 20_000

export async function replayChangelog(args: ReplayArgs): Promise<{ position: number; records: number }> {
  const { pipe, topic, partition, log, faults } = args
  let store = args.store
  const end = await pipe.endOffset(topic, partition)
  const start = await pipe.startOffset(topic, partition)
  let position = await store.changelogPosition()
  if (position > end || (position < start && position !== 0) || (position === 0 && start > 0)) {
    const err = new StateCorruptedError(`local state at changelog offset ${position} is outside the changelog [${start}, ${end}]; rebuilding it from the changelog`, { topic, partition, offset: position })
    log.warn({ code: err.code, topic, partition, offset: position, start, end }, err.message)
    store = await args.reopen()
    position = start
  }
  if (position >= end) return { position, records: 0 }
  let records = 0
  const reached = await readRange(pipe, topic, partition, position, end, async (batch, at) => {
    const writes: StoreWrite[] = batch.map((r) => ({ key: r.key!, value: r.value }))
    records += writes.length
    await store.apply(writes, at)
    faults.point('during-replay')
  }, { max: CHUNK })
  return { position: Math.max(reached, position), records }
}
