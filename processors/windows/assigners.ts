/**
 * Window assigners: which event-time windows a record belongs to. Tumbling and sliding
 * windows are aligned to the epoch and known from the timestamp alone; session windows
 * depend on the key's other records and are merged by the window processor.
 */
import { ConfigError } from '../../index.ts'

/**
 * A window of event time, `[start, end)` in ms since the epoch. It fires when the
 * watermark reaches `end - 1`, its last instant.
 *
 * @example
 * result: (acc, window: Window) => ({ from: new Date(window.start), to: new Date(window.end), n: acc })
 */
export interface Window {
  readonly start: number
  readonly end: number
}

/**
 * How records are grouped into windows; build one with `tumbling`, `sliding` or `session`.
 *
 * @example
 * const every10s: WindowAssigner = sliding(60_000, 10_000)
 */
export type WindowAssigner =
  | { readonly kind: 'tumbling'; readonly size: number; readonly offset: number }
  | { readonly kind: 'sliding'; readonly size: number; readonly slide: number; readonly offset: number }
  | { readonly kind: 'session'; readonly gap: number }

function positive(field: string, ms: number): void {
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new ConfigError(field, `must be a whole number of ms > 0, got ${ms}`)
}

function offsetWithin(field: string, offset: number, period: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset >= period) throw new ConfigError(field, `must be a whole number of ms in [0, ${period}), got ${offset}`)
}

/**
 * Fixed-size, non-overlapping windows aligned to the epoch (plus `offsetMs`): a record
 * at `t` belongs to `[t - (t - offset) mod size, … + size)`.
 *
 * @example
 * new WindowAggregate({ window: tumbling(60_000), aggregate: count })        // per minute
 * new WindowAggregate({ window: tumbling(86_400_000, 3_600_000), aggregate }) // days starting 01:00 UTC
 */
export function tumbling(sizeMs: number, offsetMs = 0): WindowAssigner {
  positive('window.size', sizeMs)
  offsetWithin('window.offset', offsetMs, sizeMs)
  return { kind: 'tumbling', size: sizeMs, offset: offsetMs }
}

/**
 * Windows of `sizeMs` starting every `slideMs` (aligned to the epoch plus `offsetMs`): a
 * record belongs to every window that contains it, `sizeMs / slideMs` of them when the
 * slide divides the size. Each record updates that many accumulators.
 *
 * @example
 * new WindowAggregate({ window: sliding(60_000, 10_000), aggregate }) // last minute, every 10 s
 */
export function sliding(sizeMs: number, slideMs: number, offsetMs = 0): WindowAssigner {
  positive('window.size', sizeMs)
  positive('window.slide', slideMs)
  // A slide longer than the size would leave records in no window, silently lost.
  if (slideMs > sizeMs) throw new ConfigError('window.slide', `must not exceed the size (${sizeMs} ms), got ${slideMs}`)
  offsetWithin('window.offset', offsetMs, slideMs)
  return { kind: 'sliding', size: sizeMs, slide: slideMs, offset: offsetMs }
}

/**
 * Session windows per key: a record at `t` opens `[t, t + gapMs)`, and sessions of a key
 * that overlap or touch merge into one (their accumulators combined with `merge`). A
 * session closes once no record came for `gapMs` of event time.
 *
 * @example
 * new WindowAggregate({ window: session(30 * 60_000), aggregate }) // visits: 30 min of inactivity ends one
 */
export function session(gapMs: number): WindowAssigner {
  positive('window.gap', gapMs)
  return { kind: 'session', gap: gapMs }
}

/** `a mod n` in [0, n), also for negative `a`. */
function mod(a: number, n: number): number {
  return ((a % n) + n) % n
}

/**
 * The windows of a tumbling or sliding assigner that contain `timestamp`, latest first.
 * Session windows are not known from the timestamp alone: see session-merge.ts.
 */
export function alignedWindows(assigner: Exclude<WindowAssigner, { kind: 'session' }>, timestamp: number): Window[] {
  const slide = assigner.kind === 'tumbling' ? assigner.size : assigner.slide
  const out: Window[] = []
  for (let start = timestamp - mod(timestamp - assigner.offset, slide); start > timestamp - assigner.size; start -= slide) {
    out.push({ start, end: start + assigner.size })
  }
  return out
}
