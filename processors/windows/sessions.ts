/**
 * Session merging: a record's session `[t, t + gap)` absorbs every session of its key it
 * overlaps or touches. A key's sessions never overlap or touch each other, so one pass
 * over them finds everything the new session merges with.
 */
import type { Window } from './assigners.ts'

/** Whether two windows overlap or touch (`[0, 10)` and `[10, 20)` make one session). */
export function touches(a: Window, b: Window): boolean {
  return a.start <= b.end && b.start <= a.end
}

/** The session `fresh` becomes in `sessions`, and the sessions it absorbs (to be removed). */
export function mergeSession<S extends Window>(sessions: Iterable<S>, fresh: Window): { merged: Window; absorbed: S[] } {
  let start = fresh.start
  let end = fresh.end
  const absorbed: S[] = []
  for (const s of sessions) {
    if (!touches(s, fresh)) continue
    absorbed.push(s)
    start = Math.min(start, s.start)
    end = Math.max(end, s.end)
  }
  return { merged: { start, end }, absorbed }
}
