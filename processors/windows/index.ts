/**
 * Event-time windows: tumbling, sliding and session windows per key, aggregated
 * incrementally, with allowed lateness and a side output for records too late.
 *
 * @example
 * import { WindowAggregate, tumbling } from 'weir/processors'
 * ticks.keyBy().process('per-minute', () => new WindowAggregate({ window: tumbling(60_000), aggregate: average }))
 */
export { tumbling, sliding, session } from './assigners.ts'
export type { Window, WindowAssigner } from './assigners.ts'
export { WindowAggregate } from './window-aggregate.ts'
export type { WindowAggregation, WindowAggregateOptions } from './window-aggregate.ts'
