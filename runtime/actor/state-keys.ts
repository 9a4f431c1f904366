/**
 * How an actor's state is laid out in its cache and local RocksDB: keyed state under
 * `name \0 record key`, actor-scoped state (and the runtime's own entries, whose names
 * start with '#', which user state names cannot) under `\u0002 name`.
 */

const KEYED_SEP = '\u0000'
/** Actor-scoped entries: one per actor, not per key. */
export const ACTOR_PREFIX = '\u0002'
/** The record key null, as a cache key. */
export const NULL_KEY = '\u0001null'
/** A source's end-of-input mark. */
export const SOURCE_FINISHED = '#finished'
/** Input positions committed with the state: topic → next offset of this actor's partition. */
export const INPUT_POSITIONS = '#positions'
/** Watermark state matching the committed positions (per-writer marks; a source's newest event time). */
export const WATERMARKS = '#watermarks'
/**
 * The checkpoint's number and epoch, and what `onCheckpoint` staged for it: written at each
 * barrier of a processor with `onCheckpointCommitted`, handed back after the commit and at start.
 */
export const CHECKPOINT_RECORD = '#checkpoint'
/** The epoch of the newest checkpoint, kept by stages that serve views (they say which checkpoint an answer reflects). */
export const VIEW_EPOCH = '#epoch'

/** The cache prefix of a keyed state: its stored keys are `name \0 record key`. */
export function keyedPrefix(name: string): string {
  return name + KEYED_SEP
}
