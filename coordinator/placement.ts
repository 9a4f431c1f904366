/**
 * Placement of actors on workers: balanced by actor count, then by load, and sticky, so an
 * actor stays on the worker that holds its local state unless that worker is gone or holds
 * more than its share. Actors that must move go, heaviest first, to a worker holding a warm
 * standby of them, else to the least-loaded worker with room (Kafka Streams balances task
 * counts the same way before it looks at anything else: counts that differ by at most one keep every worker's
 * share of actors, and so of state and restores, even).
 *
 * @example
 * place(['count/0', 'count/1'], ['w1', 'w2'], new Map()) // count/0 → w1, count/1 → w2
 */
export type Assignment = Map<string, string>

/** Actor → the workers holding a warm standby replica of its state. */
export type Standbys = Map<string, string[]>

/** Actor → its load (records per second), as workers report it. Unknown actors count as the mean. */
export type ActorLoad = ReadonlyMap<string, number>

/** Actor → workers it should not go to (it failed there). */
export type Avoid = ReadonlyMap<string, readonly string[]>

/** Actor → the worker that held it last before that worker went away: its state dir still has the actor's store. */
export type Homes = ReadonlyMap<string, string>

/**
 * Balanced and sticky; an actor whose worker is gone (or full) goes preferably to a worker
 * that holds a standby of it, so failover replays only a changelog tail, else to the
 * least-loaded worker with room. An actor never goes to a worker in `avoid` while another
 * exists (one over the count balance if need be); if it failed on every worker, anywhere.
 * A worker that comes back (a restart, a rolling upgrade) first gets back the actors in
 * `homes` that it held before it went away, whose local stores it kept: they replay only
 * the changelog written meanwhile, where any other actor would replay its whole changelog.
 */
export function place(actors: readonly string[], workers: readonly string[], previous: Assignment, standbys: Standbys = new Map(), actorLoad: ActorLoad = new Map(), avoid: Avoid = new Map(), homes: Homes = new Map()): Assignment {
  const out: Assignment = new Map()
  if (workers.length === 0) return out
  const sorted = [...workers].sort()
  // Counts differ by at most one: `extra` workers may hold one actor over the floor share.
  const share = Math.floor(actors.length / sorted.length)
  let extra = actors.length % sorted.length
  const known = actors.map((a) => actorLoad.get(a)).filter((l): l is number => l !== undefined)
  const mean = known.length === 0 ? 1 : known.reduce((s, l) => s + l, 0) / known.length
  const loadOf = (a: string): number => actorLoad.get(a) ?? mean
  const count = new Map(sorted.map((w) => [w, 0]))
  const load = new Map(sorted.map((w) => [w, 0]))
  const hasRoom = (w: string): boolean => count.get(w)! < share || (count.get(w)! === share && extra > 0)
  const put = (a: string, w: string): void => {
    out.set(a, w)
    if (count.get(w)! === share && extra > 0) extra--
    count.set(w, count.get(w)! + 1)
    load.set(w, load.get(w)! + loadOf(a))
  }
  const unplaced: string[] = []
  const room = (a: string, w: string | undefined): w is string => w !== undefined && count.has(w) && hasRoom(w) && !(avoid.get(a)?.includes(w) ?? false)
  // Home first, before the workers holding them meanwhile keep them by stickiness.
  for (const a of actors) {
    const home = homes.get(a)
    if (home !== previous.get(a) && room(a, home)) put(a, home)
  }
  for (const a of actors) {
    if (out.has(a)) continue
    const w = previous.get(a)
    if (room(a, w)) put(a, w)
    else unplaced.push(a)
  }
  // Heaviest first, so the big ones spread before the small ones fill the gaps.
  unplaced.sort((x, y) => loadOf(y) - loadOf(x) || actors.indexOf(x) - actors.indexOf(y))
  for (const a of unplaced) {
    const open = sorted.filter(hasRoom)
    const allowed = sorted.filter((w) => !(avoid.get(a)?.includes(w) ?? false))
    const openAllowed = open.filter((w) => allowed.includes(w))
    const pool = openAllowed.length > 0 ? openAllowed : allowed.length > 0 ? allowed : open
    const warm = (standbys.get(a) ?? []).filter((w) => pool.includes(w))
    const candidates = warm.length > 0 ? warm : pool
    let best = candidates[0]!
    for (const w of candidates) if (load.get(w)! < load.get(best)! || (load.get(w) === load.get(best) && count.get(w)! < count.get(best)!)) best = w
    put(a, best)
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
