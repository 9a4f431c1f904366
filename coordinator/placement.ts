/**
 * Placement of actors on workers: balanced by actor count, and sticky, so an actor stays
 * on the worker that holds its local state unless that worker is gone or overloaded.
 *
 * @example
 * place(['count/0', 'count/1'], ['w1', 'w2'], new Map()) // count/0 → w1, count/1 → w2
 */
export type Assignment = Map<string, string>

/** Actor → the workers holding a warm standby replica of its state. */
export type Standbys = Map<string, string[]>

/**
 * Balanced and sticky; an actor whose worker is gone (or full) goes preferably to a worker
 * that holds a standby of it, so failover replays only a changelog tail.
 */
export function place(actors: readonly string[], workers: readonly string[], previous: Assignment, standbys: Standbys = new Map()): Assignment {
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
    const warm = (standbys.get(a) ?? []).filter((w) => load.has(w) && load.get(w)! < cap)
    let best = warm[0] ?? sorted[0]!
    if (warm.length === 0) for (const w of sorted) if (load.get(w)! < load.get(best)!) best = w
    out.set(a, best)
    load.set(best, load.get(best)! + 1)
  }
  return out
}

/**
 * `n` standby replicas per actor on workers other than its active one, sticky (a replica
 * that is warm stays) and balanced by replica count. Fewer when there are not enough workers.
 */
export function placeStandbys(actors: readonly string[], workers: readonly string[], active: Assignment, previous: Standbys, n: number): Standbys {
  const out: Standbys = new Map()
  if (n <= 0) return out
  const sorted = [...workers].sort()
  const load = new Map(sorted.map((w) => [w, 0]))
  const pick = (a: string, candidates: string[]): string[] => candidates.filter((w) => w !== active.get(a) && load.has(w))
  for (const a of actors) {
    const kept = pick(a, previous.get(a) ?? []).slice(0, n)
    for (const w of kept) load.set(w, load.get(w)! + 1)
    out.set(a, kept)
  }
  for (const a of actors) {
    const list = out.get(a)!
    while (list.length < n) {
      const free = pick(a, sorted).filter((w) => !list.includes(w))
      if (free.length === 0) break
      let best = free[0]!
      for (const w of free) if (load.get(w)! < load.get(best)!) best = w
      list.push(best)
      load.set(best, load.get(best)! + 1)
    }
  }
  return out
}
