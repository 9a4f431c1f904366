/**
 * Savepoint create and restore rates, and the pause a savepoint imposes on processing, on the
 * embedded pipe. For each state size (`--keys`, default 1m and 10m): a keyed pipeline builds
 * that many keys of state (benchmarks/lib/savepoint-pipeline.ts), runs under a steady load
 * with ordinary checkpoints (their barrier stalls are the reference), takes a savepoint while
 * it runs (live: the time its input is held, and the whole savepoint), is stopped, savepointed
 * and restarted (the pause: stop with its final checkpoint + create + restart until the
 * state stage processes again), and the savepoint is restored into a new data dir (restore
 * call + every state actor restored, i.e. its changelog replayed). Ceilings in the same run:
 * create ÷ iterating the same RocksDB stores and writing their bytes to a file (no
 * MessagePack); restore ÷ writing the same number of records into a fresh pipe's changelog
 * in 20k-record transactions plus putting them into a fresh RocksDB store. Prints one JSON
 * line on stdout.
 *
 * @example
 * npm run bench:savepoint
 * node --import tsx benchmarks/savepoint.ts --keys 1m
 */
import { closeSync, fsyncSync, openSync, readdirSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import RocksDB from 'rocksdb-native'
import { createSavepoint } from '../runner/create-savepoint.ts'
import { ensureTopics, startEmbedded, type RunningPipeline } from '../runner/embedded-runner.ts'
import { stateCodec } from '../runtime/codec.ts'
import { naming } from '../runtime/naming.ts'
import { EmbeddedPipe } from '../runtime/pipe/embedded/embedded-pipe.ts'
import { restoreSavepoint } from '../runtime/savepoint/restore.ts'
import { keyedStoreKey } from '../runtime/savepoint/store-layout.ts'
import { writeBatch } from '../runtime/rocks.ts'
import { removeTempDirs, tempDataDir } from '../testing/index.ts'
import { countArg, flagArg, parseCount, readArgs, envValue } from './lib/options.ts'
import { printResult, startRunInfo } from './lib/run-info.ts'
import { feed, savepointPipeline } from './lib/savepoint-pipeline.ts'
import { percentile, progress, round } from './lib/stats.ts'

/** Savepoints of the running pipeline taken under load. */
const LIVE_SAVEPOINTS = 3

const USAGE = `usage: node --import tsx benchmarks/savepoint.ts [options]
  --keys LIST         state sizes, comma-separated (default 1m,10m; env BENCH_KEYS)
  --state-actors P    actors of the keyed state stage (default 2)
  --source-actors S   source actors (default 2)
  --rate R            records/s of the steady load before the savepoint (default 50k)
  --load-s S          seconds of steady load, 1 s checkpoints (default 6)
  --build-batch B     maxBatch while building the state (default 20k)
  --no-ceilings       skip the ceilings
  --keep              keep the temp data dirs (paths on stderr)
`

const args = readArgs(process.argv.slice(2), ['keys', 'state-actors', 'source-actors', 'rate', 'load-s', 'build-batch'], ['no-ceilings', 'keep'], USAGE)
const SIZES = (args.values.get('keys') ?? envValue(process.env, 'keys') ?? '1m,10m').split(',').map((s) => parseCount(s, '--keys'))
const STATE_ACTORS = countArg(args, process.env, 'state-actors') ?? 2
const SOURCE_ACTORS = countArg(args, process.env, 'source-actors') ?? 2
const RATE = countArg(args, process.env, 'rate') ?? 50_000
const LOAD_S = countArg(args, process.env, 'load-s') ?? 6
const BUILD_BATCH = countArg(args, process.env, 'build-batch') ?? 20_000
const NO_CEILINGS = flagArg(args, process.env, 'no-ceilings')
const KEEP = flagArg(args, process.env, 'keep')
if (KEEP) process.env.WEIR_KEEP_TEMP_DIRS = '1'
const STATE = 'state'
const log = pino({ level: process.env.BENCH_LOG_LEVEL ?? 'warn' }, pino.destination(2))
const info = startRunInfo(['runtime', 'runner'])
const failures: string[] = []

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const stateIn = (run: RunningPipeline): number => Object.entries(run.stats()).filter(([id]) => id.startsWith(`${STATE}/`)).reduce((n, [, s]) => n + s.recordsIn, 0)

async function waitFor(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/** Resolves once every state actor opened (restored) after this call. */
function actorsOpened(): { all: Promise<void> } {
  const seen = new Set<number>()
  let resolve!: () => void
  const all = new Promise<void>((r) => { resolve = r })
  feed.opened = (p) => {
    seen.add(p)
    if (seen.size === STATE_ACTORS) resolve()
  }
  return { all }
}

async function measure(keys: number): Promise<Record<string, unknown>> {
  const name = `spbench`
  const pipeline = savepointPipeline(name, keys, SOURCE_ACTORS, STATE_ACTORS)
  const dataDir = tempDataDir('weir-spbench-')
  const target = join(tempDataDir('weir-spbench-sp-'), 'sp')
  if (KEEP) progress(`keys ${keys}: data dir ${dataDir}, savepoint ${target}`)

  // Build: every key once, big micro-batches.
  let t = performance.now()
  feed.limit = keys
  feed.ratePerSec = undefined
  const build = await startEmbedded(pipeline, { dataDir, epochIntervalMs: 1000, actorConfig: { maxBatch: BUILD_BATCH }, log })
  await waitFor('the state to be built', () => stateIn(build) >= keys, 30 * 60_000)
  await build.stop()
  const buildMs = performance.now() - t
  progress(`keys ${keys}: state built in ${round(buildMs / 1000)} s (${Math.round(keys / (buildMs / 1000))} keys/s)`)

  // Steady load, ordinary 1 s checkpoints: their barrier stalls are the reference.
  feed.limit = Infinity
  feed.ratePerSec = RATE
  const loaded = await startEmbedded(pipeline, { dataDir, epochIntervalMs: 1000, log })
  await waitFor('the load to start', () => stateIn(loaded) > 0, 60_000)
  const skip = new Map(Object.entries(loaded.stats()).map(([id, s]) => [id, s.barrierStallsMs.length]))
  await sleep(LOAD_S * 1000)
  const stalls = Object.entries(loaded.stats()).filter(([id]) => id.startsWith(`${STATE}/`)).flatMap(([id, s]) => s.barrierStallsMs.slice(skip.get(id) ?? 0))
  const loadRate = stateIn(loaded) / LOAD_S

  // A savepoint of the running pipeline, under the same load: input is held from the hold to the release only.
  // Three of them, a second apart: the pause depends on where the load is in its epoch.
  const held: number[] = []
  const liveTimes: number[] = []
  for (let i = 0; i < LIVE_SAVEPOINTS; i++) {
    const l0 = performance.now()
    const live = await loaded.savepoint(`live-${i}`)
    liveTimes.push(performance.now() - l0)
    held.push(live.heldMs)
    const liveKeys = live.manifest.stages[STATE]!.actors.reduce((n, a) => n + (a.keys.last ?? 0), 0)
    if (liveKeys !== keys) failures.push(`keys ${keys}: live savepoint ${i} holds ${liveKeys} keys of state 'last'`)
    progress(`keys ${keys}: live savepoint ${round(liveTimes[i]!)} ms, inputs held ${live.heldMs} ms`)
    await sleep(1000)
  }
  const liveMs = percentile(liveTimes, 50)

  // The pause: stop (final checkpoint) → create → restart until the state stage processes again.
  const t0 = performance.now()
  await loaded.stop()
  const t1 = performance.now()
  const phases: { drainMs?: number; checkMs?: number; writeMs?: number } = {}
  // createSavepoint logs its phases (drain, in-flight check, write) in its last line.
  const createLog = pino({ level: 'info' }, { write: (line: string) => {
    const o = JSON.parse(line) as { msg?: string; level: number }
    if (o.msg === 'savepoint written') Object.assign(phases, o)
    else if (o.level >= 40) process.stderr.write(line)
  } })
  const manifest = await createSavepoint(pipeline, { dataDir, target, log: createLog })
  const t2 = performance.now()
  const restarted = await startEmbedded(pipeline, { dataDir, epochIntervalMs: 1000, log })
  await waitFor('processing to resume', () => stateIn(restarted) > 0, 10 * 60_000)
  const t3 = performance.now()
  feed.limit = 0
  await restarted.stop()
  const saved = manifest.stages[STATE]!.actors.reduce((n, a) => n + (a.keys.last ?? 0), 0)
  if (saved !== keys) failures.push(`keys ${keys}: the savepoint holds ${saved} keys of state 'last'`)
  const createMs = t2 - t1
  progress(`keys ${keys}: create ${round(createMs)} ms (drain ${phases.drainMs} ms, write ${phases.writeMs} ms), pause ${round(t3 - t0)} ms`)

  const createCeiling = NO_CEILINGS ? undefined : await copyStores(dataDir, tempDataDir('weir-spbench-copy-'))

  // Restore: the restore call (changelogs written) + every state actor restored (changelogs replayed).
  const restoreDir = tempDataDir('weir-spbench-restore-')
  feed.limit = 0
  const opened = actorsOpened()
  const r0 = performance.now()
  const pipe = await EmbeddedPipe.open(restoreDir)
  await ensureTopics(pipe, pipeline)
  const report = await restoreSavepoint(pipeline, pipe, target, { log })
  const r1 = performance.now()
  const restored = await startEmbedded(pipeline, { dataDir: restoreDir, pipe, epochIntervalMs: 1000, log })
  await opened.all
  const r2 = performance.now()
  feed.opened = () => undefined
  const replayed = Object.entries(restored.stats()).filter(([id]) => id.startsWith(`${STATE}/`)).reduce((n, [, s]) => n + s.replayedChangelogRecords, 0)
  await restored.stop()
  await pipe.close()
  if (report.keys !== keys) failures.push(`keys ${keys}: the restore wrote ${report.keys} keys`)
  if (replayed < keys) failures.push(`keys ${keys}: the state actors replayed ${replayed} changelog records, fewer than the ${keys} keys restored`)
  const restoreMs = r2 - r0
  progress(`keys ${keys}: restore ${round(restoreMs)} ms (write ${round(r1 - r0)}, actors restored ${round(r2 - r1)})`)

  const restoreCeiling = NO_CEILINGS ? undefined : await writeLikeRestore(keys, tempDataDir('weir-spbench-ceil-'))

  const k = keys >= 1e6 && keys % 1e6 === 0 ? `${keys / 1e6}m` : String(keys)
  const out: Record<string, unknown> = {
    [`build_${k}_keys_per_s`]: Math.round(keys / (buildMs / 1000)),
    [`create_${k}_keys_per_s`]: Math.round(keys / (createMs / 1000)),
    [`create_${k}_ms`]: round(createMs),
    [`create_${k}_drain_ms`]: phases.drainMs,
    [`create_${k}_in_flight_check_ms`]: phases.checkMs,
    [`create_${k}_write_ms`]: phases.writeMs,
    [`restore_${k}_keys_per_s`]: Math.round(keys / (restoreMs / 1000)),
    [`restore_${k}_ms`]: round(restoreMs),
    [`restore_${k}_write_changelog_ms`]: round(r1 - r0),
    [`restore_${k}_actors_restored_ms`]: round(r2 - r1),
    [`live_savepoint_${k}_input_held_ms`]: held,
    [`live_savepoint_${k}_input_held_max_ms`]: Math.max(...held),
    [`live_savepoint_${k}_ms_p50`]: round(liveMs),
    [`live_savepoint_${k}_keys_per_s`]: Math.round(keys / (liveMs / 1000)),
    [`savepoint_pause_${k}_stop_create_restart_ms`]: round(t3 - t0),
    [`savepoint_pause_${k}_stop_ms`]: round(t1 - t0),
    [`savepoint_pause_${k}_restart_ms`]: round(t3 - t2),
    [`checkpoint_barrier_stall_${k}_p99_ms`]: round(percentile(stalls, 99)),
    [`checkpoint_barrier_stall_${k}_p50_ms`]: round(percentile(stalls, 50)),
    [`checkpoint_barrier_stalls_${k}`]: stalls.length,
    [`load_${k}_records_per_s`]: Math.round(loadRate),
  }
  if (createCeiling !== undefined) {
    out[`create_${k}_ceiling_keys_per_s`] = Math.round(createCeiling.entries / (createCeiling.ms / 1000))
    out[`create_${k}_ratio`] = round(createCeiling.ms / createMs)
  }
  if (restoreCeiling !== undefined) {
    out[`restore_${k}_ceiling_keys_per_s`] = Math.round(keys / ((restoreCeiling.changelogMs + restoreCeiling.rocksMs) / 1000))
    out[`restore_${k}_ceiling_changelog_ms`] = round(restoreCeiling.changelogMs)
    out[`restore_${k}_ceiling_rocksdb_ms`] = round(restoreCeiling.rocksMs)
    out[`restore_${k}_ratio`] = round((restoreCeiling.changelogMs + restoreCeiling.rocksMs) / restoreMs)
  }
  if (!KEEP) removeTempDirs()
  return out
}

/** The create ceiling: every entry of the state stage's stores, iterated and written length-prefixed to a file, synced. */
async function copyStores(dataDir: string, outDir: string): Promise<{ entries: number; ms: number }> {
  const started = performance.now()
  let entries = 0
  for (const p of readdirSync(join(dataDir, 'state', STATE))) {
    const db = new RocksDB(join(dataDir, 'state', STATE, p))
    await db.ready()
    const fd = openSync(join(outDir, `${p}.bin`), 'w')
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024)
    let at = 0
    for await (const { key, value } of db.iterator({ gte: Buffer.alloc(0), capacity: 1024 })) {
      const need = 8 + key.length + value.length
      if (at + need > buf.length) {
        writeSync(fd, buf, 0, at)
        at = 0
      }
      buf.writeUInt32BE(key.length, at)
      key.copy(buf, at + 4)
      buf.writeUInt32BE(value.length, at + 4 + key.length)
      value.copy(buf, at + 8 + key.length)
      at += need
      entries++
    }
    writeSync(fd, buf, 0, at)
    fsyncSync(fd)
    closeSync(fd)
    await db.close()
  }
  return { entries, ms: performance.now() - started }
}

/** The restore ceiling: the same number of keyed entries written to a fresh pipe's changelog in 20k-record transactions, and put into a fresh RocksDB store. */
async function writeLikeRestore(keys: number, dir: string): Promise<{ changelogMs: number; rocksMs: number }> {
  const value = stateCodec.encode(keys)
  const entry = (i: number): Buffer => keyedStoreKey('last', Buffer.from('k' + i))
  const pipe = await EmbeddedPipe.open(join(dir, 'pipe'))
  const topic = naming.changelog('ceiling', STATE)
  await pipe.ensureTopic({ name: topic, partitions: STATE_ACTORS, compacted: true })
  let t = performance.now()
  const producers = await Promise.all(Array.from({ length: STATE_ACTORS }, (_, p) => pipe.producer(`ceiling-${p}`)))
  const now = Date.now()
  for (let from = 0; from < keys; from += 20_000 * STATE_ACTORS) {
    for (const pr of producers) pr.begin()
    const to = Math.min(keys, from + 20_000 * STATE_ACTORS)
    for (let i = from; i < to; i++) producers[i % STATE_ACTORS]!.send(topic, i % STATE_ACTORS, { key: entry(i), value, timestamp: now })
    await Promise.all(producers.map((pr) => pr.commit()))
  }
  for (const pr of producers) await pr.close()
  const changelogMs = performance.now() - t
  await pipe.close()
  const db = new RocksDB(join(dir, 'rocks'))
  await db.ready()
  t = performance.now()
  for (let from = 0; from < keys; from += 20_000) {
    const to = Math.min(keys, from + 20_000)
    const batch = writeBatch(db, to - from)
    for (let i = from; i < to; i++) batch.tryPut(entry(i), value)
    await batch.flush()
    batch.destroy()
  }
  const rocksMs = performance.now() - t
  await db.close()
  return { changelogMs, rocksMs }
}

const result: Record<string, unknown> = { bench: 'savepoint', state_actors: STATE_ACTORS, source_actors: SOURCE_ACTORS, load_rate: RATE }
try {
  for (const keys of SIZES) Object.assign(result, await measure(keys))
} finally {
  if (!KEEP) removeTempDirs()
}
printResult(result, info, failures)
