/**
 * Joins of two keyed streams, for a stage made with `a.connect(b)` (input 0 is `a`, input 1
 * is `b`): an interval join, an event-time stream-table (temporal) join, a window join, and a
 * regular (unbounded) join. All are event-time operators: their results do not depend on the
 * order records arrive in, only on which are late. See docs/joins.md.
 *
 * @example
 * import { IntervalJoin } from 'weir/processors'
 * left.keyBy(4).connect(right.keyBy(4)).process('pairs', () => new IntervalJoin({ lowerBoundMs: 0, upperBoundMs: 5_000, join: (l, r) => [l, r] }))
 */
export { IntervalJoin } from './interval-join.ts'
export type { IntervalJoinOptions } from './interval-join.ts'
export { RegularJoin } from './regular-join.ts'
export type { RegularJoinOptions } from './regular-join.ts'
export { StreamTableJoin } from './stream-table-join.ts'
export type { StreamTableJoinOptions } from './stream-table-join.ts'
export { WindowJoin } from './window-join.ts'
export type { WindowJoinOptions } from './window-join.ts'
export type { LateOutput } from './late.ts'
