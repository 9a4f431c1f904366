/**
 * "Did you mean": the closest of a set of valid names to a mistyped one, for errors about an
 * unknown option, param or stage. Distance is optimal string alignment (Damerau-Levenshtein
 * without reusing a transposed pair): a swapped pair of letters (`cuont`) counts as one edit.
 *
 * @example
 * closestName('datadir', ['data-dir', 'epoch-ms']) // 'data-dir'
 * closestName('zzz', ['data-dir'])                 // undefined: nothing is close
 */

/** Edits (insert, delete, substitute, swap two adjacent characters) turning `a` into `b`. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1)
      d[i]![j] = best
    }
  }
  return d[a.length]![b.length]!
}

/**
 * The candidate closest to `given` (case-insensitive), if it is close enough to be a typo: at
 * most a third of the longer name's length in edits (at least 1, at most 3), or `given` is a
 * prefix of exactly one candidate (`--data` for `--data-dir`).
 */
export function closestName(given: string, candidates: readonly string[]): string | undefined {
  const g = given.toLowerCase()
  let best: string | undefined
  let bestDistance = Infinity
  for (const c of candidates) {
    const distance = editDistance(g, c.toLowerCase())
    const allowed = Math.min(3, Math.max(1, Math.floor(Math.max(g.length, c.length) / 3)))
    if (distance <= allowed && distance < bestDistance) {
      best = c
      bestDistance = distance
    }
  }
  if (best !== undefined) return best
  const prefixed = g.length >= 3 ? candidates.filter((c) => c.toLowerCase().startsWith(g)) : []
  return prefixed.length === 1 ? prefixed[0] : undefined
}
