/**
 * The valid name closest to a mistyped one, for error messages that suggest a fix
 * ("did you mean 'page-counts'?"). Edit distance (Levenshtein), case-insensitive; a name
 * too far from every candidate gets no suggestion rather than a misleading one.
 *
 * @example
 * closestName('page-count', ['pages', 'page-counts', 'sink'])  // 'page-counts'
 */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  const wanted = name.toLowerCase()
  let best: string | undefined
  let bestDistance = Infinity
  for (const c of candidates) {
    const d = editDistance(wanted, c.toLowerCase())
    if (d < bestDistance) { best = c; bestDistance = d }
  }
  // Two edits, or one per three characters for long names: a swapped pair ('cuont' → 'count') is two.
  return best !== undefined && bestDistance <= Math.max(2, Math.ceil(wanted.length / 3)) ? best : undefined
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]!
}
