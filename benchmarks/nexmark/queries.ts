/**
 * Nexmark q0–q8 as weir pipelines, written with the public API only (weir's
 * index.ts and weir/processors), as a user would write them: a filter stage where the query
 * filters, `keyBy` before keyed state, built-in windows where the query is a window. Each
 * query's output lines (what the tally sink checksums) are defined in README.md; the Flink
 * peer and reference.ts produce the same lines.
 */
import { Pipeline, Processor, Source, type Context, type SourceContext, type SourceStatus, type Stream, type StreamRecord, type Timer } from '../../index.ts'
import { RegularJoin, WindowAggregate, WindowJoin, sliding, tumbling, type Window } from '../../processors/index.ts'
import { eventCodec } from './event-codec.ts'
import { eventAt, eventLine, Tally, type Auction, type Bid, type NexmarkEvent, type Person } from './generator.ts'

export const QUERY_NAMES = ['q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'q6', 'q7', 'q8'] as const
export type QueryName = (typeof QUERY_NAMES)[number]

/** Window sizes of the window queries, ms of event time. */
export const Q5_SIZE_MS = 10_000
export const Q5_SLIDE_MS = 2_000
export const Q7_SIZE_MS = 10_000
export const Q8_SIZE_MS = 10_000
/** q2 keeps the bids of every 123rd auction id. */
export const Q2_AUCTION_MODULUS = 123
/** q3 joins sellers from these states with their auctions of this category. */
export const Q3_STATES: readonly string[] = ['OR', 'ID', 'CA']
export const Q3_CATEGORY = 10
/** q6 averages the selling prices of each seller's last this many closed auctions. */
export const Q6_LAST = 10

/** Events emitted per poll (a micro-batch); the source then yields to the event loop. */
const PER_POLL = 1000

/**
 * Events 0..count-1 of `seed`, each with its event time, unkeyed. Its position is actor
 * state, committed with what it emitted.
 */
export class NexmarkSource extends Source<NexmarkEvent> {
  private readonly next = this.state.actorValue<number>('next')

  constructor(private readonly seed: number, private readonly count: number) {
    super()
  }

  poll(ctx: SourceContext<NexmarkEvent>): SourceStatus | Promise<SourceStatus> {
    let n = this.next.get() ?? 0
    const end = Math.min(n + PER_POLL, this.count)
    for (; n < end; n++) {
      const e = eventAt(this.seed, n)
      ctx.emit(null, e, { timestamp: dateTimeOf(e) })
    }
    this.next.set(n)
    if (n >= this.count) return 'done'
    // Yield to the event loop so the epoch timer can fire (see benchmarks/lib/pipelines.ts).
    return new Promise<SourceStatus>((resolve) => setImmediate(resolve, 'more'))
  }
}

export function dateTimeOf(e: NexmarkEvent): number {
  return e.person?.dateTime ?? e.auction?.dateTime ?? e.bid!.dateTime
}

/** A stateless stage: `f` returns the key and value to emit, or undefined to drop the event. */
class FilterMap<In, Out> extends Processor<In, Out> {
  constructor(private readonly f: (value: In) => readonly [string | null, Out] | undefined) {
    super()
  }

  onRecord(r: StreamRecord<In>, ctx: Context<Out>): void {
    const out = this.f(r.value)
    if (out !== undefined) ctx.emit(out[0], out[1])
  }
}

/** The last stage of every query: adds the lines of each output record to a tally. */
class TallySink<T> extends Processor<T, never> {
  constructor(private readonly tally: Tally, private readonly lines: (value: T) => readonly string[]) {
    super()
  }

  onRecord(r: StreamRecord<T>): void {
    for (const line of this.lines(r.value)) this.tally.add(line)
  }
}

// ---- q3: incremental join of persons (from OR, ID, CA) with their auctions of category 10:
// a regular join, since a seller may register after their auction (up to 10 person ids ahead).

export interface Q3Out { name: string; city: string; state: string; id: number }

function q3Out(p: Person, a: Auction): Q3Out {
  return { name: p.name, city: p.city, state: p.state, id: a.id }
}

// ---- q4: average closing price per category; q6: average selling price per seller over their last closed auctions.

interface OpenAuction { category: number; seller: number; reserve: number; dateTime: number; expires: number; best: number }
export interface Q4Closing { category: number; price: number }
export interface Q4Out { category: number; at: number; avg: number }
export interface Q6Closing { auction: number; price: number }
export interface Q6Out { seller: number; at: number; avg: number }

/**
 * Keyed by auction id: the auction and its best valid bid so far (a bid of an auction seen
 * before it, at or above the reserve, within [dateTime, expires]); at `expires` (event
 * time) emits the winning price, if any, as `closing` makes it (its key and value).
 */
class CloseAuction<Out> extends Processor<NexmarkEvent, Out> {
  private readonly auction = this.state.value<OpenAuction>('auction')

  constructor(private readonly closing: (auction: number, o: OpenAuction) => readonly [string, Out]) {
    super()
  }

  onRecord(r: StreamRecord<NexmarkEvent>, ctx: Context<Out>): void {
    const a = r.value.auction
    if (a !== undefined) {
      this.auction.set({ category: a.category, seller: a.seller, reserve: a.reserve, dateTime: a.dateTime, expires: a.expires, best: -1 })
      ctx.timers.registerEventTime(a.expires)
      return
    }
    const b = r.value.bid!
    const o = this.auction.get()
    if (o === undefined || b.price < o.reserve || b.price <= o.best || b.dateTime < o.dateTime || b.dateTime > o.expires) return
    this.auction.set({ ...o, best: b.price })
  }

  override onTimer(t: Timer, ctx: Context<Out>): void {
    const o = this.auction.get()
    if (o === undefined) return
    if (o.best >= 0) {
      const [key, value] = this.closing(Number(t.key), o)
      ctx.emit(key, value)
    }
    this.auction.clear()
  }
}

/** Auctions and bids keyed by auction id (q4, q6), across the edge by position (event-codec.ts). */
function auctionsAndBids(events: Stream<NexmarkEvent>, stage: string) {
  return events
    .process(stage, () => new FilterMap<NexmarkEvent, NexmarkEvent>((e) => {
      if (e.auction !== undefined) return [String(e.auction.id), e]
      if (e.bid !== undefined) return [String(e.bid.auction), e]
      return undefined
    }), { codec: eventCodec })
    .keyBy(1)
}

/**
 * Keyed by category: the running average of closing prices, one output per instant at
 * which auctions of the category closed (so ties in closing time give one answer,
 * whatever order their timers fired in).
 */
class Q4Average extends Processor<Q4Closing, Q4Out> {
  private readonly total = this.state.value<{ sum: number; n: number }>('total')
  private readonly closing = this.state.map<{ sum: number; n: number }>('closing')

  onRecord(r: StreamRecord<Q4Closing>, ctx: Context<Q4Out>): void {
    const at = String(r.timestamp)
    const c = this.closing.get(at) ?? { sum: 0, n: 0 }
    this.closing.set(at, { sum: c.sum + r.value.price, n: c.n + 1 })
    ctx.timers.registerEventTime(r.timestamp)
  }

  override onTimer(t: Timer, ctx: Context<Q4Out>): void {
    const at = String(t.time)
    const c = this.closing.get(at)
    if (c === undefined) return
    this.closing.delete(at)
    const prev = this.total.get() ?? { sum: 0, n: 0 }
    const next = { sum: prev.sum + c.sum, n: prev.n + c.n }
    this.total.set(next)
    const category = Number(t.key)
    ctx.emit(t.key, { category, at: t.time, avg: Math.trunc(next.sum / next.n) })
  }
}

/**
 * Keyed by seller: the prices of their last Q6_LAST closed auctions, ordered by closing
 * time and then auction id; one output per instant at which auctions of the seller closed
 * (so ties in closing time give one answer, whatever order their timers fired in).
 */
class Q6Average extends Processor<Q6Closing, Q6Out> {
  private readonly recent = this.state.value<readonly number[]>('recent')
  private readonly closing = this.state.map<ReadonlyArray<readonly [number, number]>>('closing')

  onRecord(r: StreamRecord<Q6Closing>, ctx: Context<Q6Out>): void {
    const at = String(r.timestamp)
    this.closing.set(at, [...(this.closing.get(at) ?? []), [r.value.auction, r.value.price]])
    ctx.timers.registerEventTime(r.timestamp)
  }

  override onTimer(t: Timer, ctx: Context<Q6Out>): void {
    const at = String(t.time)
    const closed = this.closing.get(at)
    if (closed === undefined) return
    this.closing.delete(at)
    const prices = [...(this.recent.get() ?? []), ...[...closed].sort((x, y) => x[0] - y[0]).map(([, price]) => price)].slice(-Q6_LAST)
    this.recent.set(prices)
    ctx.emit(t.key, { seller: Number(t.key), at: t.time, avg: Math.trunc(prices.reduce((a, b) => a + b, 0) / prices.length) })
  }
}

// ---- q5: hot items (the auctions with the most bids per sliding window).

export interface Q5Count { auction: number; count: number; end: number }
export interface Q5Out { end: number; count: number; auctions: number[] }

// ---- q7: highest bid per tumbling window.

export interface Q7Out { price: number; bids: Bid[] }

// ---- q8: new sellers: each person paired with the auctions they opened in the tumbling window they registered in.

export interface Q8Out { id: number; name: string; reserve: number; start: number }

/**
 * Persons on the main output, auctions on side output 'auctions' (each keyed as `keys`
 * says, or dropped when it returns undefined): one pass over the events for the two
 * inputs of a join.
 */
class SplitPersonsAuctions extends Processor<NexmarkEvent, Person> {
  constructor(private readonly personKey: (p: Person) => string | undefined, private readonly auctionKey: (a: Auction) => string | undefined) {
    super()
  }

  onRecord(r: StreamRecord<NexmarkEvent>, ctx: Context<Person>): void {
    const { person, auction } = r.value
    if (person !== undefined) {
      const key = this.personKey(person)
      if (key !== undefined) ctx.emit(key, person)
    } else if (auction !== undefined) {
      const key = this.auctionKey(auction)
      if (key !== undefined) ctx.emitTo('auctions', key, auction)
    }
  }
}

/** Persons keyed by id connected with auctions keyed by seller, as `split` chose them. */
function personsWithAuctions(events: Stream<NexmarkEvent>, stage: string, personKey: (p: Person) => string | undefined, auctionKey: (a: Auction) => string | undefined) {
  const split = events.process(stage, () => new SplitPersonsAuctions(personKey, auctionKey), { sideOutputs: ['auctions'] })
  return split.keyBy(1).connect(split.sideOutput<Auction>('auctions').keyBy(1))
}

/** A query: its stages after the source, and the lines of each record its last stage emits. */
interface QueryDefinition {
  build(events: Stream<NexmarkEvent>): Stream<unknown>
  lines(value: unknown): readonly string[]
}

function bidsOnly(keyOf: (b: Bid) => string | null) {
  return () => new FilterMap<NexmarkEvent, Bid>((e) => (e.bid === undefined ? undefined : [keyOf(e.bid), e.bid]))
}

export const QUERIES: Record<QueryName, QueryDefinition> = {
  q0: {
    build: (events) => events.process('q0', () => new FilterMap<NexmarkEvent, NexmarkEvent>((e) => [null, e])),
    lines: (e) => [eventLine(e as NexmarkEvent)],
  },
  q1: {
    build: (events) => events.process('q1', () => new FilterMap<NexmarkEvent, Bid>((e) => (e.bid === undefined ? undefined : [null, { ...e.bid, price: Math.trunc((e.bid.price * 89) / 100) }]))),
    lines: (v) => {
      const b = v as Bid
      return [`${b.auction}|${b.bidder}|${b.price}|${b.dateTime}`]
    },
  },
  q2: {
    build: (events) => events.process('q2', () => new FilterMap<NexmarkEvent, { auction: number; price: number }>((e) => (e.bid === undefined || e.bid.auction % Q2_AUCTION_MODULUS !== 0 ? undefined : [null, { auction: e.bid.auction, price: e.bid.price }]))),
    lines: (v) => {
      const o = v as { auction: number; price: number }
      return [`${o.auction}|${o.price}`]
    },
  },
  q3: {
    build: (events) => personsWithAuctions(events, 'q3-split',
      (p) => (Q3_STATES.includes(p.state) ? String(p.id) : undefined),
      (a) => (a.category === Q3_CATEGORY ? String(a.seller) : undefined))
      .process('q3-join', () => new RegularJoin<Person, Auction, Q3Out>({ join: q3Out })),
    lines: (v) => {
      const o = v as Q3Out
      return [`${o.name}|${o.city}|${o.state}|${o.id}`]
    },
  },
  q4: {
    build: (events) => auctionsAndBids(events, 'q4-filter')
      .process('q4-close', () => new CloseAuction<Q4Closing>((_auction, o) => [String(o.category), { category: o.category, price: o.best }]))
      .keyBy(1)
      .process('q4-average', Q4Average),
    lines: (v) => {
      const o = v as Q4Out
      return [`${o.category}|${o.at}|${o.avg}`]
    },
  },
  q5: {
    build: (events) => events
      .process('q5-bids', bidsOnly((b) => String(b.auction)))
      .keyBy(1)
      .process('q5-count', () => new WindowAggregate<Bid, number, Q5Count>({
        window: sliding(Q5_SIZE_MS, Q5_SLIDE_MS),
        aggregate: { create: () => 0, add: (n) => n + 1, result: (n, w: Window, key) => ({ auction: Number(key), count: n, end: w.end }) },
      }))
      .keyBy(() => 'all', 1)
      // Each sliding window's counts carry its last instant (end - 1), which falls in exactly
      // one slide-sized tumbling window, ending where the sliding window ends.
      .process('q5-max', () => new WindowAggregate<Q5Count, Q5Out, Q5Out>({
        window: tumbling(Q5_SLIDE_MS),
        aggregate: {
          create: () => ({ end: 0, count: 0, auctions: [] }),
          add: (acc, c) => (c.count > acc.count ? { end: c.end, count: c.count, auctions: [c.auction] } : c.count === acc.count ? { ...acc, auctions: [...acc.auctions, c.auction] } : acc),
          result: (acc) => acc,
        },
      })),
    lines: (v) => {
      const o = v as Q5Out
      return o.auctions.map((a) => `${a}|${o.count}|${o.end}`)
    },
  },
  q6: {
    build: (events) => auctionsAndBids(events, 'q6-filter')
      .process('q6-close', () => new CloseAuction<Q6Closing>((auction, o) => [String(o.seller), { auction, price: o.best }]))
      .keyBy(1)
      .process('q6-average', Q6Average),
    lines: (v) => {
      const o = v as Q6Out
      return [`${o.seller}|${o.at}|${o.avg}`]
    },
  },
  q7: {
    build: (events) => events
      .process('q7-bids', bidsOnly(() => 'all'))
      .keyBy(1)
      .process('q7-max', () => new WindowAggregate<Bid, Q7Out, Q7Out>({
        window: tumbling(Q7_SIZE_MS),
        aggregate: {
          create: () => ({ price: -1, bids: [] }),
          add: (acc, b) => (b.price > acc.price ? { price: b.price, bids: [b] } : b.price === acc.price ? { price: acc.price, bids: [...acc.bids, b] } : acc),
          result: (acc) => acc,
        },
      })),
    lines: (v) => (v as Q7Out).bids.map((b) => `${b.auction}|${b.bidder}|${b.price}|${b.dateTime}`),
  },
  q8: {
    build: (events) => personsWithAuctions(events, 'q8-split', (p) => String(p.id), (a) => String(a.seller))
      .process('q8-join', () => new WindowJoin<Person, Auction, Q8Out>({
        window: tumbling(Q8_SIZE_MS),
        join: (p, a, w) => ({ id: p.id, name: p.name, reserve: a.reserve, start: w.start }),
      })),
    lines: (v) => {
      const o = v as Q8Out
      return [`${o.id}|${o.name}|${o.reserve}|${o.start}`]
    },
  },
}

/**
 * The pipeline of one query: the Nexmark source (one actor), the query's stages (each with
 * one actor: parallelism 1) and a sink that adds the output lines to `tally`.
 *
 * @example
 * const tally = new Tally()
 * const run = await startEmbedded(nexmarkPipeline('q5', { seed: 42, events: 100_000, tally }), { dataDir })
 */
export function nexmarkPipeline(query: QueryName, o: { seed: number; events: number; tally: Tally }): Pipeline {
  const p = new Pipeline(`nexmark-${query}`)
  const events = p.source('events', () => new NexmarkSource(o.seed, o.events), { partitions: 1, watermarks: { maxOutOfOrdernessMs: 0 } })
  const q = QUERIES[query]
  q.build(events).to('tally', () => new TallySink(o.tally, q.lines))
  return p
}
