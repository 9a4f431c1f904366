/**
 * The Nexmark event generator: event n of a seed is a pure function of (seed, n), by the rules
 * written in benchmarks/nexmark/README.md. The Flink peer's Generator.java implements the same
 * rules; `checksumOfEvents` on both sides proves they produce the same sequence.
 */

export interface Person {
  id: number
  name: string
  emailAddress: string
  creditCard: string
  city: string
  state: string
  dateTime: number
}

export interface Auction {
  id: number
  itemName: string
  description: string
  initialBid: number
  reserve: number
  dateTime: number
  expires: number
  seller: number
  category: number
}

export interface Bid {
  auction: number
  bidder: number
  price: number
  channel: string
  url: string
  dateTime: number
}

/** One Nexmark event: exactly one of the three is set (as Beam's `Event`). */
export interface NexmarkEvent {
  person?: Person
  auction?: Auction
  bid?: Bid
}

export const FIRST_PERSON_ID = 1000
export const FIRST_AUCTION_ID = 1000
export const FIRST_CATEGORY_ID = 10
const PERSON_PROPORTION = 1
const AUCTION_PROPORTION = 3
const PROPORTION_DENOMINATOR = 50
const NUM_CATEGORIES = 5
const NUM_IN_FLIGHT_AUCTIONS = 100
const NUM_ACTIVE_PEOPLE = 1000
const PERSON_ID_LEAD = 10
const AUCTION_ID_LEAD = 10
const HOT_AUCTION_RATIO = 100
const HOT_SELLER_RATIO = 100
const HOT_BIDDER_RATIO = 100
const HOT_AUCTIONS_ONE_IN = 2
const HOT_SELLERS_ONE_IN = 4
const HOT_BIDDERS_ONE_IN = 4
/** Event time of event 0 (a multiple of every window size the queries use). */
export const BASE_TIME = 1_700_000_000_000
/** Events per second of event time: event n happens at BASE_TIME + floor(n / 10) ms. */
export const EVENTS_PER_SECOND = 10_000
const EVENTS_PER_MS = EVENTS_PER_SECOND / 1000
/** Events until NUM_IN_FLIGHT_AUCTIONS more auctions exist (how far ahead an auction's expiry may reach). */
const EVENTS_FOR_AUCTIONS = Math.trunc((NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR) / AUCTION_PROPORTION)

const FIRST_NAMES = ['Peter', 'Paul', 'Luke', 'John', 'Saul', 'Vicky', 'Kate', 'Julie', 'Sarah', 'Deiter', 'Walter']
const LAST_NAMES = ['Shultz', 'Abrams', 'Spencer', 'White', 'Bartels', 'Walton', 'Smith', 'Jones', 'Noris']
const US_STATES = ['AZ', 'CA', 'ID', 'OR', 'WA', 'WY']
const US_CITIES = ['Phoenix', 'Los Angeles', 'San Francisco', 'Boise', 'Portland', 'Bend', 'Redmond', 'Seattle', 'Kent', 'Cheyenne']
const CHANNELS = ['Google', 'Facebook', 'Baidu', 'Apple']

/** MurmurHash3's 32-bit finalizer (a bijection on 32-bit words), as a signed 32-bit int. */
export function fmix32(x: number): number {
  let h = x | 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h
}

/** FNV-1a over the UTF-16 code units of `s` (all ASCII here), unsigned 32-bit. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5 | 0
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/** The random draws of one event: a counter-based stream seeded by (seed, n). */
class Draws {
  private state: number

  constructor(seed: number, n: number) {
    this.state = fmix32((Math.imul(n, 0x9e3779b9) + seed) | 0)
  }

  /** A uniform integer in [0, bound) (bound ≤ 2^32; the modulo bias is part of the rules). */
  int(bound: number): number {
    this.state = (this.state + 0x6d2b79f5) | 0
    return (fmix32(this.state) >>> 0) % bound
  }

  /** A price in cents: a decade 10^d · 100 (d in 0..5) at random, then uniform in it. */
  price(): number {
    const low = 100 * 10 ** this.int(6)
    return low + this.int(9 * low)
  }
}

/** The event time of event n. */
export function timestampOf(n: number): number {
  return BASE_TIME + Math.trunc(n / EVENTS_PER_MS)
}

function lastBase0PersonId(n: number): number {
  // One person per 50 events, at offset 0: the newest person is the one of this epoch.
  return Math.trunc(n / PROPORTION_DENOMINATOR)
}

function lastBase0AuctionId(n: number): number {
  let epoch = Math.trunc(n / PROPORTION_DENOMINATOR)
  let offset = n % PROPORTION_DENOMINATOR
  if (offset < PERSON_PROPORTION) {
    epoch--
    offset = AUCTION_PROPORTION - 1
  } else if (offset >= PERSON_PROPORTION + AUCTION_PROPORTION) {
    offset = AUCTION_PROPORTION - 1
  } else {
    offset -= PERSON_PROPORTION
  }
  return epoch * AUCTION_PROPORTION + offset
}

function nextBase0PersonId(n: number, d: Draws): number {
  const people = lastBase0PersonId(n) + 1
  const active = Math.min(people, NUM_ACTIVE_PEOPLE)
  return people - active + d.int(active + PERSON_ID_LEAD)
}

function nextBase0AuctionId(n: number, d: Draws): number {
  const max = lastBase0AuctionId(n)
  const min = Math.max(max - NUM_IN_FLIGHT_AUCTIONS, 0)
  return min + d.int(max - min + 1 + AUCTION_ID_LEAD)
}

function pad4(x: number): string {
  return String(x).padStart(4, '0')
}

function person(n: number, d: Draws, ts: number): Person {
  const id = lastBase0PersonId(n) + FIRST_PERSON_ID
  const name = `${FIRST_NAMES[d.int(FIRST_NAMES.length)]} ${LAST_NAMES[d.int(LAST_NAMES.length)]}`
  const creditCard = `${pad4(d.int(10_000))} ${pad4(d.int(10_000))} ${pad4(d.int(10_000))} ${pad4(d.int(10_000))}`
  const city = US_CITIES[d.int(US_CITIES.length)]!
  const state = US_STATES[d.int(US_STATES.length)]!
  return { id, name, emailAddress: `p${id}@nexmark.example`, creditCard, city, state, dateTime: ts }
}

function auction(n: number, d: Draws, ts: number): Auction {
  const id = lastBase0AuctionId(n) + FIRST_AUCTION_ID
  const seller = (d.int(HOT_SELLERS_ONE_IN) > 0 ? Math.trunc(lastBase0PersonId(n) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO : nextBase0PersonId(n, d)) + FIRST_PERSON_ID
  const category = FIRST_CATEGORY_ID + d.int(NUM_CATEGORIES)
  const initialBid = d.price()
  const horizonMs = timestampOf(n + EVENTS_FOR_AUCTIONS) - ts
  const expires = ts + 1 + d.int(Math.max(horizonMs * 2, 1))
  const reserve = initialBid + d.price()
  return { id, itemName: `item-${id}`, description: `auction ${id}`, initialBid, reserve, dateTime: ts, expires, seller, category }
}

function bid(n: number, d: Draws, ts: number): Bid {
  const auctionId = (d.int(HOT_AUCTIONS_ONE_IN) > 0 ? Math.trunc(lastBase0AuctionId(n) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO : nextBase0AuctionId(n, d)) + FIRST_AUCTION_ID
  const bidder = (d.int(HOT_BIDDERS_ONE_IN) > 0 ? Math.trunc(lastBase0PersonId(n) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1 : nextBase0PersonId(n, d)) + FIRST_PERSON_ID
  const price = d.price()
  const channel = CHANNELS[d.int(CHANNELS.length)]!
  return { auction: auctionId, bidder, price, channel, url: `https://nexmark.example/${channel}/item/${auctionId}`, dateTime: ts }
}

/**
 * Event n (0 ≤ n < 2^31) of `seed` (a 32-bit integer): a person at n mod 50 = 0, an
 * auction at 1..3, a bid at 4..49.
 *
 * @example
 * eventAt(42, 0).person?.id // 1000
 */
export function eventAt(seed: number, n: number): NexmarkEvent {
  const d = new Draws(seed, n)
  const ts = timestampOf(n)
  const offset = n % PROPORTION_DENOMINATOR
  if (offset < PERSON_PROPORTION) return { person: person(n, d, ts) }
  if (offset < PERSON_PROPORTION + AUCTION_PROPORTION) return { auction: auction(n, d, ts) }
  return { bid: bid(n, d, ts) }
}

/** The event's canonical text line (what checksums are taken of). */
export function eventLine(e: NexmarkEvent): string {
  if (e.person !== undefined) {
    const p = e.person
    return `P|${p.id}|${p.name}|${p.emailAddress}|${p.creditCard}|${p.city}|${p.state}|${p.dateTime}`
  }
  if (e.auction !== undefined) {
    const a = e.auction
    return `A|${a.id}|${a.itemName}|${a.description}|${a.initialBid}|${a.reserve}|${a.dateTime}|${a.expires}|${a.seller}|${a.category}`
  }
  const b = e.bid!
  return `B|${b.auction}|${b.bidder}|${b.price}|${b.channel}|${b.url}|${b.dateTime}`
}

/** Order-dependent checksum of events 0..count-1: h = fmix32(h + fnv1a(line)), unsigned. */
export function checksumOfEvents(seed: number, count: number): number {
  let h = 0
  for (let n = 0; n < count; n++) h = fmix32((h + fnv1a(eventLine(eventAt(seed, n)))) | 0)
  return h >>> 0
}

/**
 * The outputs of a query as a count and an order-independent checksum (sum of the lines'
 * FNV-1a mod 2^32), so weir, Flink and the reference loop compare without agreeing on order.
 */
export class Tally {
  count = 0
  sum = 0

  add(line: string): void {
    this.count++
    this.sum = (this.sum + fnv1a(line)) >>> 0
  }
}
