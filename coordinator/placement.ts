/**
 * Placement of actors on workers: balanced by actor count, and sticky, so an actor stays
 * on the worker that holds its local state unless that worker is gone or overloaded.
 *
 * @example
 * place(['count/0', 'count/1'], ['w1', 'w2'], new Map()) // count/0 → w1, count/1 → w2
 */
export type Assignment = Map<string, string>

export function place(actors: readonly string[], workers: readonly string[], previous: Assignment): Assignment {
  const out: Assignment = new Map()
  if (workers.length === 0) return out
  const sorted = [...workers].sort()
  const cap = Math.ceil(actors.length / sorted.length)
  const load = new Map(sorted.map((w) => [w, 0]))
  const unplaced: string[] = []
  for (const a of actors) {
    const w = previous.get(a)
    if (w !== undefined && load.has(w) && load.get(w)! < cap) {
      out.set(a, w)
      load.set(w, load.get(w)! + 1)
    } else {
      unplaced.push(a)
    }
  }
  for (const a of unplaced) {
    let best = sorted[0]!
    for (const w of sorted) if (load.get(w)! < load.get(best)!) best = w
    out.set(a, best)
    load.set(best, load.get(best)! + 1)
  }
  return out
}
