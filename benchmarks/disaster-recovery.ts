/**
 * Disaster-recovery drill: what a savepoint shipped to another site costs and buys, timed
 * step by step with the commands an operator runs (docs/operations.md, "Disaster recovery:
 * savepoints at another site"). Site A is Kafka + NATS at --kafka-a/--nats-a, site B the
 * second set (scripts/services.sh starts kafka2 and nats2). Per state size (--keys, a list):
 *
 * - setup, not timed as a step: the state is built in an embedded run of
 *   lib/dr-pipeline.ts (a count per key over `keys` distinct keys), saved, and restored onto
 *   Kafka A (`seed_restore_ms`); a coordinator and two workers then run it there with a
 *   trickle of input (--rate records/s per source partition) until both report ready.
 * - the periodic savepoint at site A: `stop_ms` (SIGTERM both workers until they exited),
 *   `create_ms` (`weir savepoint create --pipe kafka://A`), `restart_ms` (workers started
 *   again until both answer /readyz 200); `pause_ms` is their sum, the processing pause each
 *   savepoint costs today (a savepoint needs a stopped pipeline).
 * - shipping: `copy_ms` (`cp -r` to site B's directory on this disk) and `bytes`;
 *   `copy_ms_at_link` estimates the copy over a --link-mbps link.
 * - site A is lost (its processes SIGKILLed); at site B: `verify_ms` (`weir savepoint
 *   inspect --verify`), `restore_ms` (`weir savepoint restore --pipe kafka://B`), `start_ms`
 *   (a coordinator and two workers until both answer /readyz 200: restored from the
 *   changelog and caught up with their input), then `first_output_ms` (B's first committed
 *   output record, read_committed).
 * - `rpo_s` = --interval-s + stop + create + copy at the link: the worst age of the newest
 *   savepoint at B when A is lost (what A processed since it is lost with A, and redone at B
 *   when the input is replayable). `rto_s` = verify + restore + start: from the decision to
 *   fail over to processing at B (the time to notice and decide is not in it).
 *
 * Prints one JSON line on stdout (`runs`: one entry per size); progress on stderr. Exits 1
 * if a step fails or the savepoint at A does not hold every key. Topics, groups and KV buckets
 * of the run are deleted at the end on both sites (--keep keeps them and the temp dir).
 *
 * @example
 * npm run bench:dr -- --keys 100k,1m
 * node --import tsx benchmarks/disaster-recovery.ts --keys 100k --interval-s 900 --link-mbps 1000
 */
// Before kafkajs, as every kafkajs user in weir does.
import '../runtime/pipe/kafka/kafkajs-fixes.ts'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, readdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { loadavg, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Kafka, logLevel } from 'kafkajs'
import { pino } from 'pino'
import { createSavepoint } from '../runner/create-savepoint.ts'
import { startEmbedded } from '../runner/embedded-runner.ts'
import { KafkaPipe } from '../runtime/pipe/kafka/kafka-pipe.ts'
import { readRange } from '../runtime/pipe/read-range.ts'
import { isControlRecord } from '../runtime/watermarks.ts'
import { deleteLeaseBucket, deleteRunArtifacts } from './lib/cluster-cleanup.ts'
import { parseCount } from './lib/options.ts'
import { progress } from './lib/stats.ts'
import drPipeline from './lib/dr-pipeline.ts'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const BIN = join(ROOT, 'bin/weir.js')
const PIPELINE_FILE = join(ROOT, 'benchmarks/lib/dr-pipeline.ts')
const EPOCH_MS = 500

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '100k,1m' },
    rate: { type: 'string', default: '100' },
    'interval-s': { type: 'string', default: '900' },
    'link-mbps': { type: 'string', default: '1000' },
    'kafka-a': { type: 'string', default: process.env.WEIR_KAFKA_BROKERS ?? '127.0.0.1:9092' },
    'nats-a': { type: 'string', default: process.env.WEIR_NATS_URL ?? 'nats://127.0.0.1:4222' },
    'kafka-b': { type: 'string', default: process.env.WEIR_KAFKA2_BROKERS ?? '127.0.0.1:19092' },
    'nats-b': { type: 'string', default: process.env.WEIR_NATS2_URL ?? 'nats://127.0.0.1:14222' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (values.help) {
  process.stdout.write(`usage: node --import tsx benchmarks/disaster-recovery.ts [options]
  --keys LIST          state sizes to drill, e.g. 100k,1m (default 100k,1m)
  --rate N             input records/s per source partition during the drill (100)
  --interval-s N       the savepoint interval the RPO is computed for (900)
  --link-mbps N        the link to site B the copy time is estimated for (1000)
  --kafka-a, --nats-a  site A (WEIR_KAFKA_BROKERS, WEIR_NATS_URL; 127.0.0.1:9092, :4222)
  --kafka-b, --nats-b  site B (WEIR_KAFKA2_BROKERS, WEIR_NATS2_URL; 127.0.0.1:19092, :14222)
  --keep               keep topics, KV buckets and the temp dir
`)
  process.exit(0)
}
const sizes = values.keys.split(',').map((k) => parseCount(k, '--keys'))
const intervalS = Number(values['interval-s'])
const linkMbps = Number(values['link-mbps'])
const log = pino({ level: 'silent' })
const live = new Set<ChildProcess>()

function gitRev(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

interface Proc {
  child: ChildProcess
  out: () => string
  done: Promise<number | null>
}

function weir(args: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, WEIR_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  let out = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const done = new Promise<number | null>((r) => child.on('close', (code) => {
    live.delete(child)
    r(code)
  }))
  return { child, out: () => out, done }
}

/** Runs a weir command to its end; throws with its output when it fails. */
async function weirOk(args: string[]): Promise<string> {
  const p = weir(args)
  const code = await p.done
  if (code !== 0) throw new Error(`weir ${args.join(' ')} exited ${code}:\n${p.out()}`)
  return p.out()
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer()
    s.once('error', rej)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => res(port))
    })
  })
}

async function ready(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 200
  } catch {
    return false
  }
}

async function until(what: string, check: () => Promise<boolean>, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${withinMs} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

interface Site {
  kafka: string
  nats: string
  cluster: string
  coordinator?: Proc
  workers: Array<{ proc: Proc; port: number }>
}

const params = (name: string, keys: number, extra: Record<string, string> = {}): string[] =>
  Object.entries({ name, keys: String(keys), rate: values.rate, ...extra }).flatMap(([k, v]) => ['--param', `${k}=${v}`])

async function startWorkers(site: Site, dir: string, name: string, keys: number, tag: string): Promise<void> {
  site.workers = []
  for (const id of ['w1', 'w2']) {
    const port = await freePort()
    const proc = weir(['worker', PIPELINE_FILE, '--pipe', `kafka://${site.kafka}`, '--bus', site.nats, '--cluster', site.cluster, '--id', `${tag}-${id}`, '--state-dir', join(dir, `${tag}-${id}`), '--metrics-port', String(port), '--epoch-ms', String(EPOCH_MS), ...params(name, keys)])
    site.workers.push({ proc, port })
  }
  await until(`${tag}: both workers ready`, async () => (await Promise.all(site.workers.map((w) => ready(w.port)))).every(Boolean), 600_000)
}

function startCoordinator(site: Site): void {
  site.coordinator = weir(['coordinator', '--bus', site.nats, '--cluster', site.cluster, '--epoch-ms', String(EPOCH_MS), '--settle-ms', '300', '--worker-timeout-ms', '10000'])
}

function dirBytes(dir: string): number {
  let n = 0
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n += statSync(join(e.parentPath, e.name)).size
  return n
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now()
  const v = await f()
  return [v, Math.round(performance.now() - t0)]
}

async function firstOutput(kafka: string, topic: string, withinMs: number): Promise<void> {
  const pipe = await KafkaPipe.connect({ brokers: kafka.split(',') }, log)
  try {
    await until('a committed output record at B', async () => {
      const spec = await pipe.describeTopic(topic)
      if (spec === undefined) return false
      for (let p = 0; p < spec.partitions; p++) {
        let data = false
        await readRange(pipe, topic, p, await pipe.startOffset(topic, p), await pipe.endOffset(topic, p), (batch) => {
          if (batch.some((r) => !isControlRecord(r))) data = true
        })
        if (data) return true
      }
      return false
    }, withinMs)
  } finally {
    await pipe.close()
  }
}

async function drill(keys: number, work: string): Promise<Record<string, unknown>> {
  const runId = `dr-${randomBytes(4).toString('hex')}`
  const name = runId
  const dir = join(work, runId)
  const a: Site = { kafka: values['kafka-a'], nats: values['nats-a'], cluster: `${runId}-a`, workers: [] }
  const b: Site = { kafka: values['kafka-b'], nats: values['nats-b'], cluster: `${runId}-b`, workers: [] }
  try {
    // Setup: N keys of state, built embedded, restored onto Kafka A, running there.
    progress(`${runId}: building ${keys} keys embedded`)
    const build = drPipeline({ name, keys: String(keys), rate: values.rate, build: 'true' })
    const run = await startEmbedded(build, { dataDir: join(dir, 'build'), epochIntervalMs: EPOCH_MS, log })
    const counted = (): number => Object.entries(run.stats()).filter(([id]) => id.startsWith('count/')).reduce((n, [, s]) => n + s.recordsIn, 0)
    await until('the build counted every key', async () => counted() >= keys, 600_000)
    await run.stop()
    const [, seedCreateMs] = await timed(() => createSavepoint(build, { dataDir: join(dir, 'build'), target: join(dir, 'sp-seed'), log }))
    rmSync(join(dir, 'build'), { recursive: true, force: true })
    progress(`${runId}: seeding Kafka A from the build's savepoint`)
    const [, seedRestoreMs] = await timed(() => weirOk(['savepoint', 'restore', join(dir, 'sp-seed'), PIPELINE_FILE, '--pipe', `kafka://${a.kafka}`, ...params(name, keys)]))
    startCoordinator(a)
    const [, firstStartMs] = await timed(() => startWorkers(a, dir, name, keys, 'a'))
    await new Promise((r) => setTimeout(r, 3000))

    // The periodic savepoint at A.
    progress(`${runId}: savepoint at site A`)
    const [, stopMs] = await timed(async () => {
      for (const w of a.workers) w.proc.child.kill('SIGTERM')
      const codes = await Promise.all(a.workers.map((w) => w.proc.done))
      if (codes.some((c) => c !== 0)) throw new Error(`site A workers exited ${codes.join(', ')}:\n${a.workers.map((w) => w.proc.out()).join('\n')}`)
    })
    const spA = join(dir, 'site-a', 'sp')
    const [, createMs] = await timed(() => weirOk(['savepoint', 'create', PIPELINE_FILE, '--pipe', `kafka://${a.kafka}`, '--data-dir', join(dir, 'create-state'), '--target', spA, ...params(name, keys)]))
    const manifest = JSON.parse(readFileSync(join(spA, 'manifest.json'), 'utf8')) as { stages: Record<string, { actors: Array<{ keys: Record<string, number> }> }> }
    const savedKeys = Object.values(manifest.stages).reduce((n, s) => n + s.actors.reduce((m, x) => m + Object.values(x.keys).reduce((y, z) => y + z, 0), 0), 0)
    // The same workers, on their own state dirs, as a restart at the site does.
    // Every key the build counted is in the savepoint (exit 1 otherwise: a drill that lost state measured nothing).
    if (savedKeys !== keys) throw new Error(`the savepoint of site A holds ${savedKeys} keys, expected ${keys}`)
    const [, restartMs] = await timed(() => startWorkers(a, dir, name, keys, 'a'))

    // Shipping, then site A is lost.
    const bytes = dirBytes(spA)
    const spB = join(dir, 'site-b', 'sp')
    const [, copyMs] = await timed(async () => cpSync(spA, spB, { recursive: true }))
    const copyAtLinkMs = Math.round((bytes * 8) / (linkMbps * 1e6) * 1000)
    for (const w of a.workers) w.proc.child.kill('SIGKILL')
    a.coordinator?.child.kill('SIGKILL')

    // Site B takes over.
    progress(`${runId}: failing over to site B`)
    const [, verifyMs] = await timed(() => weirOk(['savepoint', 'inspect', spB, '--verify']))
    const [, restoreMs] = await timed(() => weirOk(['savepoint', 'restore', spB, PIPELINE_FILE, '--pipe', `kafka://${b.kafka}`, ...params(name, keys)]))
    const t0 = performance.now()
    startCoordinator(b)
    await startWorkers(b, dir, name, keys, 'b')
    const startMs = Math.round(performance.now() - t0)
    await firstOutput(b.kafka, drPipeline({ name }).outputTopic(drPipeline({ name }).stage('count')!), 60_000)
    const firstOutputMs = Math.round(performance.now() - t0)

    const pauseMs = stopMs + createMs + restartMs
    return {
      keys, saved_keys: savedKeys, bytes,
      seed_create_ms: seedCreateMs, seed_restore_ms: seedRestoreMs, first_start_ms: firstStartMs,
      stop_ms: stopMs, create_ms: createMs, restart_ms: restartMs, pause_ms: pauseMs,
      copy_ms: copyMs, link_mbps: linkMbps, copy_ms_at_link: copyAtLinkMs,
      verify_ms: verifyMs, restore_ms: restoreMs, start_ms: startMs, first_output_ms: firstOutputMs,
      interval_s: intervalS,
      rpo_s: Math.round((intervalS * 1000 + stopMs + createMs + copyAtLinkMs) / 100) / 10,
      rto_s: Math.round((verifyMs + restoreMs + startMs) / 100) / 10,
    }
  } finally {
    for (const p of live) p.kill('SIGKILL')
    if (!values.keep) {
      await new Promise((r) => setTimeout(r, 500))
      await Promise.all([a, b].map(async (site) => {
        const admin = new Kafka({ clientId: 'weir-dr-cleanup', brokers: site.kafka.split(','), logLevel: logLevel.NOTHING }).admin()
        await admin.connect()
        // Groups of SIGKILLed readers keep a member until their session times out (30 s).
        await deleteRunArtifacts(admin, runId, 45).catch((err: unknown) => progress(`cleanup on ${site.kafka}: ${String(err)}`))
        await admin.disconnect()
        await deleteLeaseBucket(site.nats, site.cluster).catch(() => undefined)
      }))
    }
  }
}

const work = mkdtempSync(join(tmpdir(), 'weir-dr-'))
process.on('SIGINT', () => {
  for (const p of live) p.kill('SIGKILL')
  process.exit(130)
})
try {
  const runs: Array<Record<string, unknown>> = []
  for (const keys of sizes) runs.push(await drill(keys, work))
  process.stdout.write(`${JSON.stringify({ bench: 'disaster-recovery', git_rev: gitRev(), load: loadavg().map((l) => Math.round(l * 100) / 100), runs })}\n`)
} finally {
  for (const p of live) p.kill('SIGKILL')
  if (!values.keep) rmSync(work, { recursive: true, force: true })
  else progress(`kept ${work}`)
}
