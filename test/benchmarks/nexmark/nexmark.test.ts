/**
 * Nexmark benchmark correctness: the generator follows its written rules, the Java generator
 * of the Flink peer produces the same events, and every weir query's output equals the
 * reference answer of a plain loop (bench:nexmark also checks Flink's output on every run).
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildFlinkPeer, flinkGeneratorChecksum } from '../../../benchmarks/nexmark/flink-peer.ts'
import { BASE_TIME, checksumOfEvents, eventAt, FIRST_AUCTION_ID, FIRST_CATEGORY_ID, FIRST_PERSON_ID } from '../../../benchmarks/nexmark/generator.ts'
import { QUERY_NAMES } from '../../../benchmarks/nexmark/queries.ts'
import { referenceTally } from '../../../benchmarks/nexmark/reference.ts'
import { runWeirQuery } from '../../../benchmarks/nexmark/weir-run.ts'

const SEED = 42
/** 12 s of event time: two tumbling 10 s windows, six sliding windows' ends. */
const QUERY_EVENTS = Number(process.env.NEXMARK_TEST_EVENTS ?? 120_000)

describe('the Nexmark generator', () => {
  it('makes 1 person, 3 auctions and 46 bids of every 50 events, with ids, categories and times by the rules', () => {
    const kinds = { person: 0, auction: 0, bid: 0 }
    let lastAuction = FIRST_AUCTION_ID - 1
    for (let n = 0; n < 5000; n++) {
      const e = eventAt(SEED, n)
      const time = e.person?.dateTime ?? e.auction?.dateTime ?? e.bid!.dateTime
      expect(time).toBe(BASE_TIME + Math.floor(n / 10))
      if (e.person !== undefined) {
        kinds.person++
        expect(e.person.id).toBe(FIRST_PERSON_ID + n / 50)
      } else if (e.auction !== undefined) {
        kinds.auction++
        expect(e.auction.id).toBe(lastAuction + 1)
        lastAuction = e.auction.id
        expect(e.auction.category).toBeGreaterThanOrEqual(FIRST_CATEGORY_ID)
        expect(e.auction.category).toBeLessThan(FIRST_CATEGORY_ID + 5)
        expect(e.auction.reserve).toBeGreaterThan(e.auction.initialBid)
        expect(e.auction.expires).toBeGreaterThan(e.auction.dateTime)
        expect(e.auction.seller).toBeLessThanOrEqual(FIRST_PERSON_ID + Math.floor(n / 50) + 10)
      } else {
        kinds.bid++
        const b = e.bid!
        expect(b.price).toBeGreaterThanOrEqual(100)
        expect(b.price).toBeLessThan(100_000_000)
        // A bid is for an auction in flight or at most 10 ahead of the newest one.
        expect(b.auction).toBeLessThanOrEqual(lastAuction + 10)
        expect(b.auction).toBeGreaterThanOrEqual(Math.max(FIRST_AUCTION_ID, lastAuction - 100))
      }
    }
    expect(kinds).toEqual({ person: 100, auction: 300, bid: 4600 })
  })

  it('is deterministic by seed, and another seed gives other events', () => {
    expect(checksumOfEvents(SEED, 10_000)).toBe(checksumOfEvents(SEED, 10_000))
    expect(checksumOfEvents(SEED + 1, 10_000)).not.toBe(checksumOfEvents(SEED, 10_000))
  })

  const hasJava = spawnSync('java', ['-version']).status === 0 && spawnSync('mvn', ['-v']).status === 0
  it.skipIf(!hasJava)('the Flink peer\'s Java generator produces the same first 50,000 events as the TS one', async () => {
    buildFlinkPeer()
    expect(await flinkGeneratorChecksum(SEED, 50_000)).toBe(checksumOfEvents(SEED, 50_000))
  }, 600_000)
})

describe('Nexmark queries on weir', () => {
  const root = mkdtempSync(join(tmpdir(), 'weir-nexmark-test-'))
  afterAll(() => rmSync(root, { recursive: true, force: true }))

  it.each(QUERY_NAMES)('%s gives the reference answer', async (query) => {
    const ref = referenceTally(query, SEED, QUERY_EVENTS)
    // The comparison would prove nothing on an empty answer.
    expect(ref.count).toBeGreaterThan(0)
    const weir = await runWeirQuery(query, { events: QUERY_EVENTS, seed: SEED, root })
    expect({ outputs: weir.outputs, checksum: weir.checksum }).toEqual({ outputs: ref.count, checksum: ref.sum })
  }, 300_000)
})
