/**
 * Views on a real cluster while an actor moves: `weir coordinator` and three `weir worker`s
 * on Kafka and NATS run the word count (views: counts, standbys: 1). The test looks every
 * word up, continuously, over the bus (its own NATS connection and ViewClient, strict and
 * stale) and over the HTTP server of every live worker, while the worker holding the most
 * count actors is SIGKILLed and its actors move. Every answer is checked against the input
 * the count stage read (its keyed topic, kept: purge=false): the count at the positions an
 * answer names is the number of that word's records below them. Answers by the actor never
 * go back per word (count, epoch); answers by a standby may, and are reported apart. Lookups
 * during the move wait and complete instead of failing. One JSON line has the figures.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import wordcount from '../../examples/wordcount.ts'
import { subjects } from '../../runtime/control/bus.ts'
import { assignmentMessage, type AssignmentMessage } from '../../runtime/control/messages.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { createLogger } from '../../runtime/log.ts'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import { readRange } from '../../runtime/pipe/read-range.ts'
import { keyBytes } from '../../runtime/record-keys.ts'
import { ViewClient, type LookupAnswer } from '../../runtime/views/view-client.ts'
import { isControlRecord } from '../../runtime/watermarks.ts'
import { TestCluster, type WeirProcess } from '../support/cluster.ts'
import { requireService } from '../support/services.ts'
import { sleep, tempDirs, until } from '../support/weir-cli.ts'
import { runsAlone } from '../support/file-lock.ts'

// Bounds real processes' timing: no other test file runs beside it (test/support/file-lock.ts).
runsAlone()

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-cluster-views-')

/** Lines per second per source partition: ~640 words a second reach the count stage. */
const RATE = 40
const EPOCH_MS = 300
const WORKER_TIMEOUT_MS = 2000
/** A lookup gives up after this long (ViewClient's budget): a failure, not a wait. */
const LOOKUP_TIMEOUT_MS = 15_000
/**
 * The longest a lookup may wait while an actor moves. Nobody answers for a moved partition
 * from the kill until the coordinator declares the worker dead (WORKER_TIMEOUT_MS, plus up
 * to a heartbeat and an epoch before it notices) and the new holder has restored the actor
 * on Kafka (producer InitProducerId fencing the dead one's transaction, whose open records
 * hold the changelog's end until aborted, and a consumer group join per input reader:
 * 2–5 s here); the client asks again with pauses up to 500 ms. 2 + 0.6 + 5 + 0.5 s, and
 * slack for a loaded 2-core machine: 12 s. A lookup that fails (20 s) is counted as an error.
 */
const MAX_WAIT_MS = 12_000
/** Lookups after the move, so the moved actors are seen answering from their new place. */
const AFTER_MOVE_MS = 4000

interface Lookup {
  family: 'bus' | 'bus-stale' | 'http'
  word: string
  at: number
  ms: number
  /** The worker whose HTTP server was asked. */
  via?: string
  answer?: LookupAnswer
  error?: string
}

function viewsUrl(p: WeirProcess): string | undefined {
  return /views at (http:\/\/\S+?)\/views\//.exec(p.stdout())?.[1]
}

describe.skipIf(!kafka.available || !nats.available)('views on a cluster while an actor moves', () => {
  it('every lookup through the bus and each worker\'s HTTP is a committed checkpoint\'s count; lookups wait through a SIGKILLed worker\'s move instead of failing', async () => {
    const dir = tempDir()
    const cluster = `v${randomUUID().slice(0, 8)}`
    const name = `views-${randomUUID().slice(0, 8)}`
    const params = { name, lines: '1000000', rate: String(RATE), standbys: '1', purge: 'false', sink: 'false' }
    const c = new TestCluster({ cluster, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs') })
    onTestFinished(() => c.killAll())
    onTestFinished((ctx) => {
      if (ctx.task.result?.state === 'fail') console.error(c.logTails(40))
    })
    const t0 = Date.now()

    const bus = await NatsBus.connect({ servers: [nats.url], name: 'views-test', log: createLogger('warn') })
    onTestFinished(() => bus.close())
    const assignments: AssignmentMessage[] = []
    bus.subscribe(subjects.assignment(cluster, name), (m) => {
      const a = assignmentMessage.safeParse(m)
      if (a.success) assignments.push(a.data)
    })
    c.startCoordinator('c1', ['--epoch-ms', String(EPOCH_MS), '--worker-timeout-ms', String(WORKER_TIMEOUT_MS), '--settle-ms', '300'])
    const workers = ['a', 'b', 'c'].map((id) => c.startWorker(id, 'examples/wordcount.ts', ['--state-dir', join(dir, id), '--epoch-ms', String(EPOCH_MS), '--heartbeat-ms', '250', ...Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`])]))

    // The same pipeline in this process: the client routes a word to its partition as keyBy wrote it.
    const pipeline = wordcount(params)
    const views = new ViewClient(bus, pipeline, { cluster, timeoutMs: LOOKUP_TIMEOUT_MS })
    const count = pipeline.stage('count')!
    const partitionOf = (word: string): number => pipeline.partitionOfKey(count, keyBytes(word))!
    const placed = await until(() => [...assignments].reverse().find((x) => new Set(Object.values(x.actors)).size === 3 && Object.keys(x.standbys ?? {}).length === Object.keys(x.actors).length), 60_000, 'all three workers placed, every actor with a standby')
    const urls = new Map(await Promise.all(workers.map(async (w) => [w.name, await until(() => viewsUrl(w), 10_000, `${w.name}'s views URL`)] as const)))
    // Every partition answers, and the words are known: a scan of the whole view. Each
    // partition must hold some of them: a partition whose first checkpoint had no word yet
    // would have none of its words looked up, and its move could never be seen (CI, stop 27).
    const words = await until(async () => {
      const page = await views.scan('counts', { limit: 1000 }, { timeoutMs: 2000 })
      const keys = page.entries.map((e) => e.key)
      const covered = new Set(keys.map(partitionOf))
      return page.partitions.length === count.parallelism && keys.length >= 20 && covered.size === count.parallelism ? keys : undefined
    }, 30_000, 'the counts view answering on every partition, with words in each')
    const startedMs = Date.now() - t0

    const lookups: Lookup[] = []
    let stopping = false
    let killed: WeirProcess | undefined
    const record = async (family: Lookup['family'], word: string, ask: (l: Lookup) => Promise<LookupAnswer>): Promise<void> => {
      const l: Lookup = { family, word, at: Date.now(), ms: 0 }
      try {
        l.answer = await ask(l)
      } catch (err) {
        l.error = (err as Error).message
      }
      l.ms = Date.now() - l.at
      lookups.push(l)
    }
    const http = async (l: Lookup, turn: number): Promise<LookupAnswer> => {
      const word = l.word
      const live = workers.filter((w) => w !== killed && w.state === 'running')
      l.via = live[turn % live.length]!.name
      const base = urls.get(l.via)!
      const res = await fetch(`${base}/views/${name}/counts/${encodeURIComponent(word)}?timeoutMs=${LOOKUP_TIMEOUT_MS}`, { signal: AbortSignal.timeout(LOOKUP_TIMEOUT_MS + 2000) })
      const body = (await res.json()) as LookupAnswer & { error?: { code: string; message: string } }
      if (res.status !== 200 && res.status !== 404) throw new Error(`HTTP ${res.status} ${body.error?.code}: ${body.error?.message}`)
      return body
    }
    // Two loops per family, each with half of the words in turn: one word's answers are ordered.
    const loops = (['bus', 'bus-stale', 'http'] as const).flatMap((family) => [0, 1].map(async (half) => {
      const mine = words.filter((_, i) => i % 2 === half)
      for (let turn = 0; !stopping; turn++) {
        const word = mine[turn % mine.length]!
        if (family === 'bus') await record(family, word, () => views.get('counts', word))
        else if (family === 'bus-stale') await record(family, word, () => views.get('counts', word, { stale: true }))
        else await record(family, word, (l) => http(l, turn))
        await sleep(20)
      }
    }))

    await sleep(2500)
    // The worker holding the most count actors dies; its actors move to the replicas' workers.
    const before = assignments.at(-1)!
    const holders = Object.entries(before.actors).filter(([a]) => a.startsWith('count/'))
    const victim = ['a', 'b', 'c'].sort((x, y) => holders.filter(([, w]) => w === y).length - holders.filter(([, w]) => w === x).length)[0]!
    const moved = holders.filter(([, w]) => w === victim).map(([a]) => Number(a.split('/')[1]))
    killed = workers.find((w) => w.name === victim)!
    const killedAt = Date.now()
    let exitedAt = Infinity
    void killed.done.then(() => (exitedAt = Date.now()))
    killed.signal('SIGKILL')
    // Moved: an assignment without the victim, and then every moved partition answering from its new holder.
    await until(() => assignments.some((x) => x.generation > before.generation && !Object.values(x.actors).includes(victim)), 30_000, `${victim}'s actors reassigned`)
    const back = await until(() => {
      const answered = new Set(lookups.filter((l) => l.at > killedAt && l.answer !== undefined && l.answer.standby !== true && l.family !== 'bus-stale').map((l) => l.answer!.partition))
      return moved.every((p) => answered.has(p)) ? Date.now() : undefined
    }, 30_000, 'the moved partitions answering again').catch((err: Error) => {
      // What the CI excerpt needs to tell a slow move from a stuck one: the lookups of each
      // moved partition since the kill, the assignments since, and what the processes logged
      // about the moved actors.
      stopping = true
      const perPartition = moved.map((p) => {
        const mine = lookups.filter((l) => l.at > killedAt && partitionOf(l.word) === p)
        const errors = [...new Set(mine.filter((l) => l.error !== undefined).map((l) => l.error!.slice(0, 160)))]
        return `count/${p}: ${words.filter((w) => partitionOf(w) === p).length} words, ${mine.length} lookups since the kill, ${mine.filter((l) => l.answer?.standby === true).length} by a standby, ${mine.filter((l) => l.answer !== undefined && l.answer.standby !== true).length} by the actor, errors: ${JSON.stringify(errors.slice(0, 3))}`
      })
      const since = assignments.filter((x) => x.generation > before.generation).map((x) => `generation ${x.generation}: ${moved.map((p) => `count/${p}@${x.actors[`count/${p}`]}`).join(' ')}`)
      const actorPattern = new RegExp(moved.map((p) => `count/${p}\\b`).join('|'))
      throw new Error(`${err.message}; killed ${victim} ${Date.now() - killedAt} ms ago, moved ${JSON.stringify(moved)}\n${perPartition.join('\n')}\nassignments since: ${since.join('; ')}\n${c.logLinesMatching(actorPattern, 10)}`)
    })
    await sleep(AFTER_MOVE_MS)
    stopping = true
    await Promise.all(loops)

    // What the count stage read: its keyed input, every partition to its end.
    const pipe = await KafkaPipe.connect({ brokers: kafka.url.split(',') }, createLogger('warn'))
    onTestFinished(() => pipe.close())
    const topic = pipeline.outputTopic(pipeline.stage(count.inputs[0]!)!)
    const offsets: Array<Map<string, number[]>> = []
    for (let p = 0; p < count.parallelism; p++) {
      const m = new Map<string, number[]>()
      await readRange(pipe, topic, p, await pipe.startOffset(topic, p), await pipe.endOffset(topic, p), (batch) => {
        for (const r of batch) if (!isControlRecord(r) && r.key !== null) m.set(r.key.toString(), [...(m.get(r.key.toString()) ?? []), r.offset])
      })
      offsets.push(m)
    }
    const below = (word: string, partition: number, position: number): number => (offsets[partition]!.get(word) ?? []).filter((o) => o < position).length

    const answered = lookups.filter((l) => l.answer !== undefined)
    const wrong: string[] = []
    const last = new Map<string, LookupAnswer>()
    let standbyAnswers = 0
    let standbyBehind = 0
    let standbyEpochsBehind = 0
    for (const l of answered.sort((x, y) => x.at + x.ms - (y.at + y.ms))) {
      const a = l.answer!
      const value = a.found ? Number(a.value) : 0
      const position = a.positions[topic] ?? 0
      const expected = below(l.word, a.partition, position)
      const final = (offsets[a.partition]!.get(l.word) ?? []).length
      if (value !== expected) wrong.push(`${l.family} ${l.word}: ${value} at partition ${a.partition} position ${position} (epoch ${a.epoch}${a.standby === true ? ', standby' : ''}); the input has ${expected} below`)
      if (value > final) wrong.push(`${l.family} ${l.word}: ${value} above the final count ${final}`)
      const key = `${l.family}:${l.word}`
      const prev = last.get(key)
      if (a.standby === true) {
        standbyAnswers++
        // A standby trails the actor: counted, not wrong, as long as it is a checkpoint's count (above).
        const newest = [...last.entries()].filter(([k]) => k.endsWith(`:${l.word}`)).map(([, v]) => v)
        const ahead = newest.filter((n) => n.epoch > a.epoch)
        if (ahead.length > 0) {
          standbyBehind++
          standbyEpochsBehind = Math.max(standbyEpochsBehind, ...ahead.map((n) => n.epoch - a.epoch))
        }
        continue
      }
      if (prev !== undefined && (value < (prev.found ? Number(prev.value) : 0) || a.epoch < prev.epoch)) wrong.push(`${l.family} ${l.word}: went back from ${String(prev.value)} (epoch ${prev.epoch}) to ${value} (epoch ${a.epoch})`)
      last.set(key, a)
    }

    // Requests on their way to the killed worker as it died get no answer: an HTTP request to its
    // server, and a bus request NATS handed to its connection before the server saw it close (the
    // process exits a moment after the signal; the server learns of it a moment later). The
    // client waits for such a request until its whole budget is spent (ViewClient sends one
    // request with a timeout of the whole budget): counted apart; they must be the only failures.
    const lostAtKill = lookups.filter((l) => l.error !== undefined && l.at + l.ms >= killedAt && l.at <= exitedAt + 100 && (l.via === victim || (moved.includes(partitionOf(l.word)) && /no reply|timeout/.test(l.error))))
    const failed = lookups.filter((l) => l.error !== undefined && !lostAtKill.includes(l))
    // In flight at some point of the move: a lookup sent just before the kill waits through it too.
    const during = lookups.filter((l) => l.at <= back && l.at + l.ms >= killedAt && !lostAtKill.includes(l))
    const figures = {
      test: 'cluster-views',
      startMs: startedMs,
      words: words.length,
      killed: victim,
      movedPartitions: moved,
      moveMs: back - killedAt,
      lookups: lookups.length,
      errors: failed.length,
      errorRate: Number((failed.length / lookups.length).toFixed(4)),
      exitedAfterKillMs: exitedAt - killedAt,
      lostAtKill: lostAtKill.map((l) => ({ family: l.family, word: l.word, partition: partitionOf(l.word), sentAfterKillMs: l.at - killedAt, failedAfterMs: l.ms, error: l.error!.slice(0, 120) })),
      maxWaitMs: Math.max(...answered.map((l) => l.ms)),
      duringMove: { lookups: during.length, answered: during.filter((l) => l.answer !== undefined).length, errors: during.filter((l) => failed.includes(l)).length, maxWaitMs: Math.max(0, ...during.filter((l) => l.answer !== undefined).map((l) => l.ms)) },
      byFamily: Object.fromEntries((['bus', 'bus-stale', 'http'] as const).map((f) => {
        const mine = lookups.filter((l) => l.family === f)
        const waits = mine.map((l) => l.ms).sort((x, y) => x - y)
        return [f, { lookups: mine.length, errors: mine.filter((l) => failed.includes(l)).length, lostAtKill: mine.filter((l) => lostAtKill.includes(l)).length, p50Ms: waits[Math.floor(waits.length / 2)], maxWaitMs: waits.at(-1), standby: mine.filter((l) => l.answer?.standby === true).length }]
      })),
      standby: { answers: standbyAnswers, behindAnEarlierAnswer: standbyBehind, maxEpochsBehind: standbyEpochsBehind },
      wrong: wrong.length,
      totalMs: Date.now() - t0,
    }
    console.log(JSON.stringify(figures))

    expect(wrong.slice(0, 20)).toEqual([])
    expect(failed.map((l) => `${l.family} ${l.word} ${l.at - killedAt} ms after the kill, failed after ${l.ms} ms: ${l.error}`).slice(0, 10)).toEqual([])
    expect(figures.maxWaitMs, 'the longest wait for an answer').toBeLessThanOrEqual(MAX_WAIT_MS)
    // Only HTTP requests to the killed worker's own server can be lost (its client must retry
    // elsewhere); a bus request NATS handed to the dying connection is asked again after its
    // attempt's timeout (ViewClient.ask) and answered by the new holder.
    expect(lostAtKill.filter((l) => l.via !== victim).map((l) => `${l.family} ${l.word}: ${l.error}`)).toEqual([])
    // Every lookup sent once the killed worker was gone was answered.
    expect(lookups.filter((l) => l.at > exitedAt + 100 && l.answer === undefined)).toEqual([])
    // The move was seen: lookups of moved partitions waited for their new holder.
    expect(during.length).toBeGreaterThan(0)
    expect(figures.duringMove.answered).toBe(figures.duringMove.lookups)
    // A lookup sent at the kill waits at least for the probes that declare the worker dead
    // (every 250 ms): 387 ms once kafkajs fixes 4 and 5 made the move faster, so not 500.
    expect(figures.duringMove.maxWaitMs).toBeGreaterThan(200)
    expect(moved.length).toBeGreaterThan(0)
    expect(placed.standbys!['count/0']).toHaveLength(1)
  }, 90_000)
})
