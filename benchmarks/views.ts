/**
 * Views benchmark: point lookups over HTTP on one worker while its word count runs at full
 * speed. A child process runs the word count (a flow-controlled line source → split →
 * keyBy → count over 100k words, served as the view `counts`, 1 s checkpoints) with the
 * views server `weir run` starts (serveViews), and this process sends lookups of random
 * words with undici: at a fixed offered rate (5,000/s by default, open loop: latency counted
 * from when each request was due, so a stall is not hidden) and unthrottled (closed loops on
 * every connection). The processing rate (count-stage records/s) is measured in windows
 * without queries, with the fixed rate, and unthrottled, alternating in the same process:
 * `processing_ratio` = rate under the fixed load ÷ the mean rate of the windows without
 * queries just before and after it (averaged over the fixed-rate windows).
 *
 * Ceilings and peers in the same run: the same views server in an idle process answering a
 * route that needs no actor (GET /views/<pipeline>: HTTP and fastify alone), raw RocksDB
 * point gets on a snapshot of a count actor's store after the run (same keys, same size),
 * and ViewClient lookups over the in-process bus in the worker itself (the view path without
 * HTTP), so the ratios say where the time goes.
 *
 * Exact: every answer is 200 (found; 404 only before a word was first counted), values are
 * at least 1 and at most the word's final count, a key's value never goes down between
 * answers in real-time order, and after the source ends and the backlog drains the count
 * state equals the generated input's counts. Otherwise exit 1. Prints exactly one JSON line
 * on stdout; progress goes to stderr. See benchmarks/README.md.
 *
 * @example
 * npm run bench:views
 * node --import tsx benchmarks/views.ts --rate 10000 --window-s 10
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { Pool } from 'undici'
import { Pipeline, Processor, Source, type Context, type SourceContext, type SourceStatus, type StreamRecord } from '../index.ts'
import { startEmbedded } from '../runner/embedded-runner.ts'
import { keyedPrefix } from '../runtime/actor/state-keys.ts'
import { localBus } from '../runtime/open-bus.ts'
import { partitionForKey } from '../runtime/partitioner.ts'
import { storeKeyBytes } from '../runtime/record-keys.ts'
import { StateStore } from '../runtime/state/state-store.ts'
import { serveViews } from '../runtime/views/serve-views.ts'
import { ViewClient } from '../runtime/views/view-client.ts'
import { readState } from '../testing/index.ts'
import { killChildren, startChild, type Child } from './lib/children.ts'
import { countArg, flagArg, readArgs } from './lib/options.ts'
import type { ChildMessage } from './lib/phases.ts'
import { printResult, startRunInfo } from './lib/run-info.ts'
import { percentile, progress, round, wallMs } from './lib/stats.ts'

const USAGE = `usage: node --import tsx benchmarks/views.ts [options]   (each also as BENCH_<OPTION>)
  --rate R           offered point lookups/s of the fixed-rate windows (default 5000)
  --keys K           distinct words, the view's keys (default 100_000)
  --partitions P     count actors (default 2)
  --epoch-ms MS      checkpoint interval (default 1000)
  --window-s S       length of each measured window (default 6)
  --warmup-s S       processing before the first window (default 6)
  --rounds N         pairs of windows without queries / at the fixed rate (default 2)
  --connections C    HTTP connections of the load generator, and in-process lookup loops of the bus peer
                     (default 256: at 5,000/s a request may wait tens of ms, so fewer would cap the rate)
  --lead-lines L     lines the source may run ahead of the count stage (default 60_000)
  --ceiling-s S      length of each ceiling measurement (default 4)
  --no-ceilings      skip the idle HTTP server and RocksDB ceilings
  --keep             keep the temp data dir
  --cpu-prof-dir DIR write a CPU profile of the word count's process under DIR
`
const args = readArgs(process.argv.slice(2), ['rate', 'keys', 'partitions', 'epoch-ms', 'window-s', 'warmup-s', 'rounds', 'connections', 'lead-lines', 'ceiling-s', 'cpu-prof-dir', 'child', 'data-dir'], ['no-ceilings', 'keep'], USAGE)
const RATE = countArg(args, process.env, 'rate') ?? 5000
const KEYS = countArg(args, process.env, 'keys') ?? 100_000
const PARTITIONS = countArg(args, process.env, 'partitions') ?? 2
const EPOCH_MS = countArg(args, process.env, 'epoch-ms') ?? 1000
const WINDOW_MS = (countArg(args, process.env, 'window-s') ?? 6) * 1000
const WARMUP_MS = (countArg(args, process.env, 'warmup-s') ?? 6) * 1000
const ROUNDS = countArg(args, process.env, 'rounds') ?? 2
const CONNECTIONS = countArg(args, process.env, 'connections') ?? 256
const LEAD_LINES = countArg(args, process.env, 'lead-lines') ?? 60_000
const CEILING_MS = (countArg(args, process.env, 'ceiling-s') ?? 4) * 1000
const NO_CEILINGS = flagArg(args, process.env, 'no-ceilings')
const KEEP = flagArg(args, process.env, 'keep')
const CPU_PROF_DIR = args.values.get('cpu-prof-dir')
const SCRIPT = fileURLToPath(import.meta.url)
const PIPELINE = 'bench-views'
const VIEW = 'counts'
const WORDS_PER_LINE = 8
/** Lookups allowed in flight at the fixed rate before the due ones queue here (their latency still counts from when they were due). */
const MAX_IN_FLIGHT = 1024

// ---- the word count (runs in the child) --------------------------------------------------

/** murmur3's finalizer: word j of line i is word number mix(i * 8 + j) mod keys. */
function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}

function wordNumber(line: number, j: number): number {
  return mix(line * WORDS_PER_LINE + j + 1) % KEYS
}

const word = (n: number): string => `w${n}`

/**
 * How far the source may go: the child raises `allowed` as the count stage catches up (so the
 * word count always has a backlog, but a bounded one) and sets `end` to finish the input.
 */
const flow = { allowed: LEAD_LINES, end: Number.POSITIVE_INFINITY }

class Lines extends Source<string> {
  private readonly next = this.state.actorValue<number>('next')
  poll(ctx: SourceContext<string>): SourceStatus {
    const i = this.next.get() ?? 0
    if (i >= flow.end) return 'done'
    if (i >= flow.allowed) return 'idle'
    const words = new Array<string>(WORDS_PER_LINE)
    for (let j = 0; j < WORDS_PER_LINE; j++) words[j] = word(wordNumber(i, j))
    ctx.emit(null, words.join(' '))
    this.next.set(i + 1)
    return 'more'
  }
}

class Split extends Processor<string, number> {
  onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
    for (const w of r.value.split(' ')) ctx.emit(w, 1)
  }
}

/** Keeps a count per word; emits nothing (the view is its output). */
class Count extends Processor<number, never> {
  private readonly count = this.state.value<number>('count')
  onRecord(): void {
    this.count.set((this.count.get() ?? 0) + 1)
  }
}

function wordCount(): Pipeline {
  const p = new Pipeline(PIPELINE)
  p.source<string>('lines', () => new Lines(), { partitions: 1 })
    .process<number>('split', Split)
    .keyBy(PARTITIONS)
    .process('count', Count, { views: { [VIEW]: 'count' } })
  return p
}

function send(msg: ChildMessage, then?: () => void): void {
  process.send!(msg, undefined, {}, () => then?.())
}

/** The child: the word count and its views server; windows are marked on request, then it finishes, checks and measures RocksDB. */
async function weirChild(dataDir: string): Promise<void> {
  const log = pino({ level: 'warn' }, pino.destination(2))
  const pipeline = wordCount()
  const run = await startEmbedded(pipeline, { dataDir, epochIntervalMs: EPOCH_MS, log })
  const server = await serveViews({ pipeline, bus: run.bus, cluster: 'embedded', host: '127.0.0.1', port: 0, log })
  const counted = (): number => Object.entries(run.stats()).filter(([id]) => id.startsWith('count/')).reduce((n, [, s]) => n + s.recordsIn, 0)
  const feeder = setInterval(() => {
    flow.allowed = Math.floor(counted() / WORDS_PER_LINE) + LEAD_LINES
  }, 50)
  // The event loop's delay per window: a lookup waits for the loop between each of its steps.
  const loop = monitorEventLoopDelay({ resolution: 1 })
  loop.enable()
  process.on('message', (raw) => {
    const m = raw as { cmd: string; id?: string; ms?: number }
    if (m.cmd === 'mark') {
      const delay = { loop_delay_p50_ms: round(loop.percentile(50) / 1e6), loop_delay_p99_ms: round(loop.percentile(99) / 1e6), loop_delay_max_ms: round(loop.max / 1e6) }
      loop.reset()
      send({ event: 'mark', id: m.id, at: wallMs(), words: counted(), ...delay })
    }
    if (m.cmd === 'bus') void busLookups(new ViewClient(run.bus, pipeline, { cluster: 'embedded' }), m.ms!).then((r) => send({ event: 'bus', ...r }))
    if (m.cmd === 'finish') void finish()
  })
  send({ event: 'ready', url: server.url })

  async function finish(): Promise<void> {
    clearInterval(feeder)
    // The source ends at the lines it is allowed now; the backlog drains without queries.
    flow.end = flow.allowed
    flow.allowed = flow.end
    progress(`finishing: the source ends at line ${flow.end}`)
    await server.close()
    progress('views server closed; waiting for the backlog to drain')
    const result = await run.done
    progress('word count finished; checking its state')
    const lines = flow.end
    const expected = new Map<string, number>()
    for (let i = 0; i < lines; i++) for (let j = 0; j < WORDS_PER_LINE; j++) {
      const w = word(wordNumber(i, j))
      expected.set(w, (expected.get(w) ?? 0) + 1)
    }
    const state = (await readState(pipeline, dataDir, 'count')).keyed.count ?? {}
    const wrong: string[] = []
    for (const [w, n] of expected) if (state[w] !== n && wrong.length < 10) wrong.push(`${w}: state ${String(state[w])}, input ${n}`)
    if (Object.keys(state).length !== expected.size) wrong.push(`${Object.keys(state).length} words in state, ${expected.size} in the input`)
    const words = Object.entries(result.stats).filter(([id]) => id.startsWith('count/')).reduce((n, [, s]) => n + s.recordsIn, 0)
    const finals: Record<string, number> = Object.fromEntries(expected)
    const rocksdb = NO_CEILINGS ? undefined : await rocksdbGets(dataDir)
    // The IPC channel would keep this process alive: exit once the report is written.
    send({ event: 'finished', lines, words, inputWords: lines * WORDS_PER_LINE, wrong, finals, rocksdb }, () => process.exit(0))
  }
}

/** Lookups through ViewClient over the worker's own bus (no HTTP), closed loops for `ms`. */
async function busLookups(views: ViewClient, ms: number): Promise<Record<string, unknown>> {
  const latencies: number[] = []
  let failures = 0
  const end = performance.now() + ms
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (performance.now() < end) {
      const t = performance.now()
      try {
        await views.get(VIEW, word(Math.floor(Math.random() * KEYS)))
        latencies.push(performance.now() - t)
      } catch {
        failures++
      }
    }
  }))
  return { ops: latencies.length, ms, failures, p50_ms: round(percentile(latencies, 50)), p99_ms: round(percentile(latencies, 99)) }
}

/** Raw point gets on a snapshot of count actor 0's store (the view's own read, without the view path), one at a time and CONNECTIONS in flight. */
async function rocksdbGets(dataDir: string): Promise<Record<string, unknown>> {
  const store = await StateStore.open(join(dataDir, 'state', 'count', '0'))
  const snapshot = store.snapshot()
  const keys: Buffer[] = []
  for (let n = 0; n < KEYS; n++) if (partitionForKey(Buffer.from(word(n)), PARTITIONS) === 0) keys.push(storeKeyBytes(keyedPrefix('count') + word(n)))
  let missing = 0
  const loop = async (end: number, latencies: number[] | undefined): Promise<number> => {
    let n = 0
    while (performance.now() < end) {
      const t = performance.now()
      const [v] = await snapshot.getMany([keys[Math.floor(Math.random() * keys.length)]!])
      if (v === null || v === undefined) missing++
      latencies?.push(performance.now() - t)
      n++
    }
    return n
  }
  try {
    const latencies: number[] = []
    const single = await loop(performance.now() + CEILING_MS, latencies)
    const counts = await Promise.all(Array.from({ length: CONNECTIONS }, () => loop(performance.now() + CEILING_MS, undefined)))
    const parallel = counts.reduce((a, b) => a + b, 0)
    return { keys: keys.length, one_at_a_time_per_s: Math.round(single / (CEILING_MS / 1000)), one_at_a_time_p50_us: round(percentile(latencies, 50) * 1000), one_at_a_time_p99_us: round(percentile(latencies, 99) * 1000), in_flight: CONNECTIONS, parallel_per_s: Math.round(parallel / (CEILING_MS / 1000)), missing }
  } finally {
    await snapshot.close()
    await store.close()
  }
}

/** The ceiling's child: the views server alone, in an idle process (its listing route needs no actor). */
async function httpChild(): Promise<void> {
  const log = pino({ level: 'warn' }, pino.destination(2))
  const server = await serveViews({ pipeline: wordCount(), bus: localBus(log), cluster: 'embedded', host: '127.0.0.1', port: 0, log })
  process.on('message', (m) => {
    if ((m as { cmd: string }).cmd === 'close') void server.close().then(() => process.exit(0))
  })
  send({ event: 'ready', url: server.url })
}

// ---- the load generator (this process) ----------------------------------------------------

interface LoadResult {
  mode: string
  sent: number
  ok: number
  notFound: number
  /** Other statuses and transport errors. */
  failed: number
  failures: string[]
  durationMs: number
  latencies: number[]
}

/** What every answered lookup must satisfy, checked after the run against the final counts. */
interface Answers {
  keys: number[]
  values: number[]
  starts: number[]
  ends: number[]
}

function newAnswers(): Answers {
  return { keys: [], values: [], starts: [], ends: [] }
}

interface Target {
  pool: Pool
  path: (n: number) => string
  /** Records found values (lookups of the view); undefined for the ceiling's route. */
  answers?: Answers
}

async function lookup(target: Target, result: LoadResult, started: number): Promise<void> {
  const n = Math.floor(Math.random() * KEYS)
  const asked = performance.now()
  try {
    const res = await target.pool.request({ path: target.path(n), method: 'GET', headersTimeout: 30_000, bodyTimeout: 30_000 })
    const body = (await res.body.json()) as { found?: boolean; value?: number; error?: { code: string } }
    const done = performance.now()
    result.latencies.push(done - started)
    if (res.statusCode === 200) {
      result.ok++
      if (target.answers !== undefined) {
        target.answers.keys.push(n)
        target.answers.values.push(body.value!)
        target.answers.starts.push(asked)
        target.answers.ends.push(done)
      }
    } else if (res.statusCode === 404 && body.found === false) {
      result.notFound++
      if (target.answers !== undefined) {
        target.answers.keys.push(n)
        target.answers.values.push(0)
        target.answers.starts.push(asked)
        target.answers.ends.push(done)
      }
    } else {
      result.failed++
      if (result.failures.length < 5) result.failures.push(`${res.statusCode} ${JSON.stringify(body).slice(0, 200)}`)
    }
  } catch (err) {
    result.failed++
    if (result.failures.length < 5) result.failures.push((err as Error).message)
  }
}

/** Open loop: request i is due at i / rate s; its latency counts from then, however late it is sent. */
function fixedRate(target: Target, rate: number, ms: number): Promise<LoadResult> {
  const result: LoadResult = { mode: `fixed ${rate}/s`, sent: 0, ok: 0, notFound: 0, failed: 0, failures: [], durationMs: 0, latencies: [] }
  const total = Math.floor((rate * ms) / 1000)
  const start = performance.now()
  let inFlight = 0
  return new Promise((resolve) => {
    const settle = (): void => {
      inFlight--
      if (result.sent === total && inFlight === 0) {
        result.durationMs = performance.now() - start
        resolve(result)
      }
    }
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000))
      while (result.sent < due && inFlight < MAX_IN_FLIGHT) {
        const dueAt = start + (result.sent * 1000) / rate
        result.sent++
        inFlight++
        void lookup(target, result, dueAt).finally(settle)
      }
      if (result.sent < total) setTimeout(tick, 1)
    }
    tick()
  })
}

/** Closed loops: one request at a time on each connection, for `ms`. */
async function unthrottled(target: Target, ms: number): Promise<LoadResult> {
  const result: LoadResult = { mode: 'unthrottled', sent: 0, ok: 0, notFound: 0, failed: 0, failures: [], durationMs: 0, latencies: [] }
  const start = performance.now()
  const end = start + ms
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (performance.now() < end) {
      result.sent++
      await lookup(target, result, performance.now())
    }
  }))
  result.durationMs = performance.now() - start
  return result
}

function figures(r: LoadResult): Record<string, unknown> {
  return {
    lookups_per_s: Math.round((r.ok + r.notFound) / (r.durationMs / 1000)),
    p50_ms: round(percentile(r.latencies, 50)),
    p99_ms: round(percentile(r.latencies, 99)),
    max_ms: round(Math.max(0, ...r.latencies)),
    answered: r.ok + r.notFound,
    not_found: r.notFound,
    failed: r.failed,
    ...(r.failures.length > 0 ? { failures: r.failures } : {}),
  }
}

const failures: string[] = []
function check(ok: boolean, what: string): void {
  if (!ok) failures.push(what)
}

async function httpCeiling(): Promise<Record<string, unknown>> {
  const child = startChild(SCRIPT, ['--child', 'http'])
  try {
    const { url } = (await child.waitFor((m) => m.event === 'ready', 60_000)) as unknown as { url: string }
    const pool = new Pool(url, { connections: CONNECTIONS, pipelining: 1 })
    const target: Target = { pool, path: () => `/views/${PIPELINE}` }
    try {
      await unthrottled(target, 1000)
      const max = await unthrottled(target, CEILING_MS)
      const fixed = await fixedRate(target, RATE, CEILING_MS)
      progress(`ceiling (views server alone, listing route): ${figures(max).lookups_per_s as number} requests/s unthrottled; at ${RATE}/s p99 ${round(percentile(fixed.latencies, 99))} ms`)
      for (const r of [max, fixed]) check(r.failed === 0 && r.notFound === 0, `ceiling ${r.mode}: ${r.failed} failed (${r.failures.join('; ')})`)
      return { unthrottled: figures(max), [`fixed_${RATE}`]: figures(fixed) }
    } finally {
      await pool.close()
    }
  } finally {
    child.process.send({ cmd: 'close' })
    await child.exited
  }
}

interface Window {
  kind: 'idle' | 'fixed' | 'unthrottled' | 'bus'
  words_per_s: number
  /** The worker's event-loop delay over the window. */
  loop_delay: Record<string, number>
  /** CPU used over the window, cores: the word count's process (all threads) and this one (the load generator). */
  cpu_cores: { weir: number; client: number }
  /** Of a window with queries: its rate ÷ the mean of the windows without queries before and after it. */
  processing_ratio?: number
  load?: Record<string, unknown>
}

async function mark(child: Child, id: string): Promise<{ at: number; words: number; loop: Record<string, number> }> {
  child.process.send({ cmd: 'mark', id })
  const m = await child.waitFor((msg) => msg.event === 'mark' && msg.id === id, 30_000)
  return { at: m.at as number, words: m.words as number, loop: { p50_ms: m.loop_delay_p50_ms as number, p99_ms: m.loop_delay_p99_ms as number, max_ms: m.loop_delay_max_ms as number } }
}

/** CPU seconds (user + system, every thread) a process used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

async function measureWindow(child: Child, kind: Window['kind'], id: string, target: Target): Promise<Window> {
  const from = await mark(child, id + '-from')
  const cpu = { weir: cpuSeconds(child.process.pid!), client: cpuSeconds(process.pid) }
  let load: Record<string, unknown> | undefined
  if (kind === 'fixed') load = figures(await fixedRate(target, RATE, WINDOW_MS))
  else if (kind === 'unthrottled') load = figures(await unthrottled(target, WINDOW_MS))
  else if (kind === 'bus') {
    child.process.send({ cmd: 'bus', ms: WINDOW_MS })
    const r = await child.waitFor((m) => m.event === 'bus', WINDOW_MS + 60_000)
    load = { lookups_per_s: Math.round((r.ops as number) / (WINDOW_MS / 1000)), p50_ms: r.p50_ms, p99_ms: r.p99_ms, failed: r.failures }
    check(r.failures === 0, `bus lookups: ${String(r.failures)} failed`)
  } else await new Promise((r) => setTimeout(r, WINDOW_MS))
  const to = await mark(child, id + '-to')
  const seconds = (to.at - from.at) / 1000
  const cpuCores = { weir: round((cpuSeconds(child.process.pid!) - cpu.weir) / seconds), client: round((cpuSeconds(process.pid) - cpu.client) / seconds) }
  const w: Window = { kind, words_per_s: Math.round((to.words - from.words) / seconds), loop_delay: to.loop, cpu_cores: cpuCores }
  if (load !== undefined) w.load = load
  progress(`window ${id} (${kind}): ${w.words_per_s.toLocaleString('en')} words/s, loop delay p99 ${to.loop.p99_ms} ms, CPU weir ${cpuCores.weir} client ${cpuCores.client}${load === undefined ? '' : `, ${String(load.lookups_per_s)} lookups/s, p50 ${String(load.p50_ms)} ms, p99 ${String(load.p99_ms)} ms`}`)
  return w
}

/** Every answer against the final counts: 1 ≤ value ≤ final, and per key never lower than an answer completed before it was asked. */
function checkAnswers(answers: Answers, finals: Record<string, number>): { checked: number; wrong: string[] } {
  const wrong: string[] = []
  const order = answers.keys.map((_, i) => i).sort((a, b) => answers.ends[a]! - answers.ends[b]!)
  const byStart = answers.keys.map((_, i) => i).sort((a, b) => answers.starts[a]! - answers.starts[b]!)
  const newest = new Map<number, number>()
  let e = 0
  for (const i of byStart) {
    while (e < order.length && answers.ends[order[e]!]! < answers.starts[i]!) {
      const d = order[e++]!
      newest.set(answers.keys[d]!, Math.max(newest.get(answers.keys[d]!) ?? 0, answers.values[d]!))
    }
    const key = answers.keys[i]!
    const v = answers.values[i]!
    const final = finals[word(key)] ?? 0
    if (wrong.length >= 10) break
    if (v > final) wrong.push(`${word(key)}: answered ${v}, its final count is ${final}`)
    if (v < (newest.get(key) ?? 0)) wrong.push(`${word(key)}: answered ${v} after an earlier answer had shown ${newest.get(key)}`)
  }
  return { checked: answers.keys.length, wrong }
}

async function main(): Promise<void> {
  const info = startRunInfo(['runtime', 'runner', 'benchmarks'])
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-views-'))
  process.on('SIGINT', () => {
    killChildren()
    process.exit(130)
  })
  const result: Record<string, unknown> = { bench: 'views', pipe: 'embedded', keys: KEYS, partitions: PARTITIONS, epoch_ms: EPOCH_MS, offered_rate: RATE, window_s: WINDOW_MS / 1000, connections: CONNECTIONS, client: 'undici Pool, this process' }
  try {
    if (!NO_CEILINGS) result.ceiling_http_listing_route = await httpCeiling()

    const child = startChild(SCRIPT, ['--child', 'weir', '--data-dir', join(dir, 'data')], { nodeArgs: CPU_PROF_DIR === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', CPU_PROF_DIR] })
    const { url } = (await child.waitFor((m) => m.event === 'ready', 120_000)) as unknown as { url: string }
    const pool = new Pool(url, { connections: CONNECTIONS, pipelining: 1 })
    const answers = newAnswers()
    const target: Target = { pool, path: (n) => `/views/${PIPELINE}/${VIEW}/${word(n)}`, answers }
    const windows: Window[] = []
    try {
      progress(`word count running (views at ${url}); warming up ${WARMUP_MS / 1000} s, 2 s of it at 1000 lookups/s`)
      await new Promise((r) => setTimeout(r, WARMUP_MS - 2000))
      await fixedRate(target, 1000, 2000)
      const plan: Array<Window['kind']> = []
      for (let r = 0; r < ROUNDS; r++) plan.push('idle', 'fixed')
      plan.push('idle', 'unthrottled', 'idle', 'bus', 'idle')
      for (const [i, kind] of plan.entries()) windows.push(await measureWindow(child, kind, `w${i}`, target))
    } finally {
      await pool.close()
    }
    child.process.send({ cmd: 'finish' })
    const finished = await child.waitFor((m) => m.event === 'finished', 600_000)
    await child.exited

    const mean = (ws: Window[]): number => ws.reduce((n, w) => n + w.words_per_s, 0) / ws.length
    // Each loaded window against the windows without queries on either side of it: the rate drifts over a run.
    for (const [i, w] of windows.entries()) if (w.kind !== 'idle') w.processing_ratio = round(w.words_per_s / mean([windows[i - 1]!, windows[i + 1]!]))
    const idle = mean(windows.filter((w) => w.kind === 'idle'))
    const fixed = windows.filter((w) => w.kind === 'fixed')
    const max = windows.find((w) => w.kind === 'unthrottled')!
    const bus = windows.find((w) => w.kind === 'bus')!
    const p99s = fixed.map((w) => w.load!.p99_ms as number)
    const ratio = fixed.reduce((n, w) => n + w.processing_ratio!, 0) / fixed.length
    const answered = checkAnswers(answers, finished.finals as Record<string, number>)
    const wrongState = finished.wrong as string[]
    check(wrongState.length === 0, `count state differs from the input: ${wrongState.join('; ')}`)
    check(finished.words === finished.inputWords, `the count stage processed ${String(finished.words)} words, the input has ${String(finished.inputWords)}`)
    check(answered.wrong.length === 0, `wrong answers: ${answered.wrong.join('; ')}`)
    for (const w of windows) if (w.load !== undefined) check(w.load.failed === 0, `window ${w.kind}: ${String(w.load.failed)} lookups failed (${JSON.stringify(w.load.failures ?? [])})`)
    const rocksdb = finished.rocksdb as Record<string, number> | undefined
    const http = result.ceiling_http_listing_route as { unthrottled: { lookups_per_s: number } } | undefined
    Object.assign(result, {
      [`p99_ms_at_${RATE}`]: round(Math.max(...p99s)),
      [`p50_ms_at_${RATE}`]: round(Math.max(...fixed.map((w) => w.load!.p50_ms as number))),
      achieved_fixed_rate: Math.round(fixed.reduce((n, w) => n + (w.load!.lookups_per_s as number), 0) / fixed.length),
      max_lookups_per_s: max.load!.lookups_per_s,
      max_lookups_p99_ms: max.load!.p99_ms,
      processing_words_per_s_idle: Math.round(idle),
      [`processing_words_per_s_at_${RATE}`]: Math.round(mean(fixed)),
      processing_words_per_s_unthrottled: max.words_per_s,
      processing_ratio: round(ratio),
      processing_ratio_unthrottled: max.processing_ratio,
      bus_lookups_per_s: bus.load!.lookups_per_s,
      bus_lookups_p99_ms: bus.load!.p99_ms,
      processing_ratio_bus: bus.processing_ratio,
      ...(http === undefined ? {} : { max_lookups_vs_http_ceiling: round((max.load!.lookups_per_s as number) / http.unthrottled.lookups_per_s) }),
      ...(rocksdb === undefined ? {} : { ceiling_rocksdb_snapshot_gets: rocksdb, max_lookups_vs_rocksdb_parallel: round((max.load!.lookups_per_s as number) / rocksdb.parallel_per_s!) }),
      windows,
      input_lines: finished.lines,
      answers_checked: answered.checked,
      goal_p99_ms: 5,
      goal_processing_ratio: 0.9,
      goal_met: Math.max(...p99s) <= 5 && ratio >= 0.9,
    })
    if (rocksdb !== undefined) check(rocksdb.missing === 0, `RocksDB ceiling: ${rocksdb.missing} gets found nothing`)
    printResult(result, info, failures)
  } finally {
    if (KEEP) progress(`kept ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  }
}

const role = args.values.get('child')
if (role === 'weir') await weirChild(args.values.get('data-dir')!)
else if (role === 'http') await httpChild()
else await main()
