/**
 * The reference answer of each query: a plain loop over the generated events, with no
 * runtime, no state store and no watermarks, producing the same output lines as the weir
 * pipelines (queries.ts) and the Flink peer must.
 */
import { eventAt, eventLine, Tally, type Auction, type Bid, type Person } from './generator.ts'
import { Q2_AUCTION_MODULUS, Q3_CATEGORY, Q3_STATES, Q5_SIZE_MS, Q5_SLIDE_MS, Q6_LAST, Q7_SIZE_MS, Q8_SIZE_MS, type QueryName } from './queries.ts'

/** The tally of `query`'s output over events 0..events-1 of `seed`. */
export function referenceTally(query: QueryName, seed: number, events: number): Tally {
  const tally = new Tally()
  const lines = (line: string): void => tally.add(line)
  switch (query) {
    case 'q0': for (let n = 0; n < events; n++) lines(eventLine(eventAt(seed, n))); break
    case 'q1': forBids(seed, events, (b) => lines(`${b.auction}|${b.bidder}|${Math.trunc((b.price * 89) / 100)}|${b.dateTime}`)); break
    case 'q2': forBids(seed, events, (b) => { if (b.auction % Q2_AUCTION_MODULUS === 0) lines(`${b.auction}|${b.price}`) }); break
    case 'q3': q3(seed, events, lines); break
    case 'q4': q4(seed, events, lines); break
    case 'q5': q5(seed, events, lines); break
    case 'q6': q6(seed, events, lines); break
    case 'q7': q7(seed, events, lines); break
    case 'q8': q8(seed, events, lines); break
  }
  return tally
}

function forBids(seed: number, events: number, f: (b: Bid) => void): void {
  for (let n = 0; n < events; n++) {
    const b = eventAt(seed, n).bid
    if (b !== undefined) f(b)
  }
}

function q3(seed: number, events: number, out: (line: string) => void): void {
  const persons = new Map<number, Person>()
  const pending = new Map<number, Auction[]>()
  const line = (p: Person, a: Auction): void => out(`${p.name}|${p.city}|${p.state}|${a.id}`)
  for (let n = 0; n < events; n++) {
    const e = eventAt(seed, n)
    if (e.person !== undefined && Q3_STATES.includes(e.person.state)) {
      persons.set(e.person.id, e.person)
      for (const a of pending.get(e.person.id) ?? []) line(e.person, a)
      pending.delete(e.person.id)
    } else if (e.auction !== undefined && e.auction.category === Q3_CATEGORY) {
      const p = persons.get(e.auction.seller)
      if (p !== undefined) line(p, e.auction)
      else pending.set(e.auction.seller, [...(pending.get(e.auction.seller) ?? []), e.auction])
    }
  }
}

/** Each auction with its winning price (-1: none): its highest bid that came after it, at or above the reserve, within [dateTime, expires]. */
function closedAuctions(seed: number, events: number): Array<{ a: Auction; best: number }> {
  const auctions = new Map<number, { a: Auction; best: number }>()
  for (let n = 0; n < events; n++) {
    const e = eventAt(seed, n)
    if (e.auction !== undefined) auctions.set(e.auction.id, { a: e.auction, best: -1 })
    const b = e.bid
    if (b === undefined) continue
    const o = auctions.get(b.auction)
    if (o !== undefined && b.price >= o.a.reserve && b.price > o.best && b.dateTime >= o.a.dateTime && b.dateTime <= o.a.expires) o.best = b.price
  }
  return [...auctions.values()]
}

function q4(seed: number, events: number, out: (line: string) => void): void {
  // Closings grouped by (category, instant), in event-time order per category.
  const byCategory = new Map<number, Map<number, { sum: number; n: number }>>()
  for (const { a, best } of closedAuctions(seed, events)) {
    if (best < 0) continue
    const instants = byCategory.get(a.category) ?? new Map<number, { sum: number; n: number }>()
    byCategory.set(a.category, instants)
    const c = instants.get(a.expires) ?? { sum: 0, n: 0 }
    instants.set(a.expires, { sum: c.sum + best, n: c.n + 1 })
  }
  for (const [category, instants] of byCategory) {
    let sum = 0
    let count = 0
    for (const at of [...instants.keys()].sort((x, y) => x - y)) {
      const c = instants.get(at)!
      sum += c.sum
      count += c.n
      out(`${category}|${at}|${Math.trunc(sum / count)}`)
    }
  }
}

function q6(seed: number, events: number, out: (line: string) => void): void {
  // Per seller, the sold auctions in closing order (expires, then id); one line per closing instant.
  const bySeller = new Map<number, Array<{ id: number; at: number; price: number }>>()
  for (const { a, best } of closedAuctions(seed, events)) {
    if (best < 0) continue
    const sold = bySeller.get(a.seller) ?? []
    bySeller.set(a.seller, sold)
    sold.push({ id: a.id, at: a.expires, price: best })
  }
  for (const [seller, sold] of bySeller) {
    sold.sort((x, y) => x.at - y.at || x.id - y.id)
    sold.forEach((s, i) => {
      if (sold[i + 1]?.at === s.at) return
      const last = sold.slice(Math.max(0, i + 1 - Q6_LAST), i + 1)
      out(`${seller}|${s.at}|${Math.trunc(last.reduce((sum, x) => sum + x.price, 0) / last.length)}`)
    })
  }
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n
}

function q5(seed: number, events: number, out: (line: string) => void): void {
  const windows = new Map<number, Map<number, number>>() // window end → auction → bids
  forBids(seed, events, (b) => {
    const latest = b.dateTime - mod(b.dateTime, Q5_SLIDE_MS)
    for (let start = latest; start > b.dateTime - Q5_SIZE_MS; start -= Q5_SLIDE_MS) {
      const end = start + Q5_SIZE_MS
      const counts = windows.get(end) ?? new Map<number, number>()
      windows.set(end, counts)
      counts.set(b.auction, (counts.get(b.auction) ?? 0) + 1)
    }
  })
  for (const [end, counts] of windows) {
    const max = Math.max(...counts.values())
    for (const [auction, count] of counts) if (count === max) out(`${auction}|${count}|${end}`)
  }
}

function q7(seed: number, events: number, out: (line: string) => void): void {
  const windows = new Map<number, { price: number; bids: Bid[] }>()
  forBids(seed, events, (b) => {
    const start = b.dateTime - mod(b.dateTime, Q7_SIZE_MS)
    const w = windows.get(start)
    if (w === undefined || b.price > w.price) windows.set(start, { price: b.price, bids: [b] })
    else if (b.price === w.price) w.bids.push(b)
  })
  for (const w of windows.values()) for (const b of w.bids) out(`${b.auction}|${b.bidder}|${b.price}|${b.dateTime}`)
}

function q8(seed: number, events: number, out: (line: string) => void): void {
  // Every (person, auction of that seller) pair of the same tumbling window.
  const persons = new Map<string, Person>() // `${id}@${window start}`
  const auctions: Array<{ key: string; a: Auction; start: number }> = []
  for (let n = 0; n < events; n++) {
    const e = eventAt(seed, n)
    if (e.person !== undefined) persons.set(`${e.person.id}@${e.person.dateTime - mod(e.person.dateTime, Q8_SIZE_MS)}`, e.person)
    else if (e.auction !== undefined) {
      const start = e.auction.dateTime - mod(e.auction.dateTime, Q8_SIZE_MS)
      auctions.push({ key: `${e.auction.seller}@${start}`, a: e.auction, start })
    }
  }
  for (const { key, a, start } of auctions) {
    const p = persons.get(key)
    if (p !== undefined) out(`${p.id}|${p.name}|${a.reserve}|${start}`)
  }
}
