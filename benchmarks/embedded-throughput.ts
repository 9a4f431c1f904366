/**
 * Embedded-mode throughput benchmark: word count over a pre-loaded topic, with checkpoints
 * every second, next to this machine's ceilings for the same records; optionally restart
 * time after SIGKILL. Prints exactly one JSON line on stdout; progress goes to stderr.
 * See benchmarks/README.md for what is measured and how.
 *
 * @example
 * npm run bench:embedded
 * node --import tsx benchmarks/embedded-throughput.ts --keys 1000000
 * node --import tsx benchmarks/embedded-throughput.ts --restart
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { naming } from '../runtime/naming.ts'
import { mapCountCeiling, msgpackDecodeCeiling, msgpackDecodeRuntimePath, rocksdbPutCeiling } from './lib/ceilings.ts'
import { killChildren, startChild } from './lib/children.ts'
import { childArgs, parseOptions, type BenchOptions } from './lib/options.ts'
import { RESTART_PIPELINE, THROUGHPUT_PIPELINE, runPhase, type ChildMessage } from './lib/phases.ts'
import { startRunInfo } from './lib/run-info.ts'
import { percentile, progress, round, wallMs } from './lib/stats.ts'
import { topicShape } from './lib/topic-records.ts'

const SCRIPT = fileURLToPath(import.meta.url)
const REPO = join(dirname(SCRIPT), '..')
const HOUR = 3_600_000
/** A restart build run that commits nothing for this long is stuck. */
const BUILD_STALL_MS = 20_000

type Result = Record<string, string | number | boolean | null>

async function throughput(o: BenchOptions, root: string): Promise<Result> {
  const dir = join(root, 'wordcount')
  const topic = naming.output(THROUGHPUT_PIPELINE, 'words')

  progress(`pre-loading ${o.records.toLocaleString('en')} records over ${o.keys.toLocaleString('en')} keys into ${topic} (${o.partitions} partition(s), checkpoint every ${o.preloadEpochMs} ms; not timed)`)
  const pre = startChild(SCRIPT, childArgs(o, 'preload', dir), { pipe: 'embedded' })
  const preloaded = await pre.waitFor((m) => m.event === 'preloaded', 2 * HOUR)
  await pre.exited
  if (preloaded.records !== o.records) throw new Error(`pre-load wrote ${String(preloaded.records)} records, expected ${o.records}`)
  const input = await topicShape(dir, topic)
  progress(`pre-loaded in ${(Number(preloaded.ms) / 1000).toFixed(1)} s: ${input.batches} stored batches, up to ${input.maxBatchRecords.toLocaleString('en')} records each`)

  const result: Result = { records: o.records, keys: o.keys, partitions: o.partitions, epoch_ms: o.epochMs, emit: o.emit }
  // The ceilings run first: once the count stage committed, the runtime may purge the consumed input.
  let ceilings: { map: number; put: number; decode: number; decodeNow: number } | undefined
  if (!o.noCeilings) {
    progress('ceiling: JS Map keyed count over the same words')
    const map = await mapCountCeiling(dir, topic)
    if (map.distinct !== Math.min(o.keys, o.records)) throw new Error(`Map ceiling saw ${map.distinct} distinct words, expected ${Math.min(o.keys, o.records)}`)
    progress('ceiling: msgpack decode of the same values')
    const decode = await msgpackDecodeCeiling(dir, topic)
    const decodeNow = await msgpackDecodeRuntimePath(dir, topic)
    progress('ceiling: rocksdb-native batched puts (10k per batch) of the same keys')
    const put = await rocksdbPutCeiling(dir, topic, join(root, 'ceiling-rocksdb'))
    rmSync(join(root, 'ceiling-rocksdb'), { recursive: true, force: true })
    ceilings = { map: map.perSecond, put: put.perSecond, decode: decode.perSecond, decodeNow: decodeNow.perSecond }
  }

  let rate = NaN
  let counted: ChildMessage | undefined
  if (!o.ceilingsOnly) {
    progress(`counting (checkpoint every ${o.epochMs} ms, ${o.emit ? 'emitting the new count per record' : 'emitting nothing'})`)
    const profile = o.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`]
    const counter = startChild(SCRIPT, childArgs(o, 'count', dir), { nodeArgs: profile, pipe: 'embedded' })
    counted = await counter.waitFor((m) => m.event === 'counted', 4 * HOUR)
    await counter.exited
    const check = counted.stateCheck as { checked: number; wrong: string[] }
    if (counted.recordsIn !== o.records) throw new Error(`the count stage processed ${String(counted.recordsIn)} records, expected ${o.records}`)
    if (check.wrong.length > 0) throw new Error(`wrong counts in state: ${check.wrong.join('; ')}`)
    const elapsedMs = Number(counted.elapsedMs)
    rate = o.records / (elapsedMs / 1000)
    const stalls = counted.stalls as number[]
    const commits = counted.commits as number[]
    progress(`counted in ${(elapsedMs / 1000).toFixed(1)} s: ${Math.round(rate).toLocaleString('en')} records/s, ${String(counted.checkpoints)} checkpoints`)
    Object.assign(result, {
      records_per_s: Math.round(rate),
      elapsed_s: round(elapsedMs / 1000),
      processing_records_per_s: Math.round(o.records / (Number(counted.processingMs) / 1000)),
      count_cpu_s: round(Number(counted.cpuS)),
      records_per_cpu_s: Math.round(o.records / Number(counted.cpuS)),
      checkpoints: Number(counted.checkpoints),
      barrier_stall_p50_ms: round(percentile(stalls, 50)),
      barrier_stall_p99_ms: round(percentile(stalls, 99)),
      barrier_stall_max_ms: round(Math.max(...stalls)),
      checkpoint_commit_ms_p50: round(percentile(commits, 50)),
      checkpoint_commit_ms_p99: round(percentile(commits, 99)),
      peak_rss_mib: Math.round(Number(counted.peakRssMiB)),
      peak_heap_used_mib: Math.round(Number(counted.peakHeapUsedMiB)),
      peak_heap_committed_mib: Math.round(Number(counted.peakHeapCommittedMiB)),
      peak_external_mib: Math.round(Number(counted.peakExternalMiB)),
      state_check: `${check.checked} words ok`,
    })
  }

  if (ceilings !== undefined) {
    const ratio = (c: number): number | null => (Number.isNaN(rate) ? null : round4(rate / c))
    Object.assign(result, {
      ceiling_map_count_per_s: Math.round(ceilings.map),
      ratio_vs_map: ratio(ceilings.map),
      ceiling_rocksdb_put_per_s: Math.round(ceilings.put),
      ratio_vs_rocksdb_put: ratio(ceilings.put),
      ceiling_msgpack_decode_per_s: Math.round(ceilings.decode),
      ratio_vs_msgpack_decode: ratio(ceilings.decode),
      msgpack_decode_runtime_path_per_s: Math.round(ceilings.decodeNow),
    })
  }
  Object.assign(result, {
    preload_s: round(Number(preloaded.ms) / 1000),
    input_batches: input.batches,
    input_batch_records_max: input.maxBatchRecords,
  })
  if (counted !== undefined) result.count_restore_ms = round(Number(counted.restoreMs))
  return result
}

/**
 * Restart after SIGKILL: builds `restartKeys` words of state with a live pipeline, SIGKILLs
 * it right after a checkpoint that covers every word committed, then times a new process
 * on the same data dir from spawn to its first committed checkpoint.
 */
async function restart(o: BenchOptions, root: string): Promise<Result> {
  const dir = join(root, 'restart')
  progress(`restart: building state of ${o.restartKeys.toLocaleString('en')} words (source at ${o.restartRate.toLocaleString('en')} records/s)`)
  const buildStarted = performance.now()
  let killedAt: ChildMessage | undefined
  let attempts = 0
  while (killedAt === undefined) {
    attempts++
    rmSync(dir, { recursive: true, force: true })
    const build = startChild(SCRIPT, childArgs(o, 'restart-build', dir), { pipe: 'embedded' })
    // A build that stops committing is stuck (see README, "a write batch created with capacity 0"): retry it.
    let lastCommit = performance.now()
    let lastNote = lastCommit
    let stuck = false
    const watchdog = setInterval(() => {
      if (performance.now() - lastCommit < BUILD_STALL_MS) return
      stuck = true
      build.process.kill('SIGKILL')
    }, 1000)
    try {
      killedAt = await build.waitFor((m) => {
        if (m.event !== 'commit') return false
        lastCommit = performance.now()
        if (lastCommit - lastNote > 10_000) {
          lastNote = lastCommit
          progress(`restart: ${Number(m.covered).toLocaleString('en')} records committed, ${Number(m.recordsIn).toLocaleString('en')} processed`)
        }
        return Number(m.covered) >= o.restartKeys
      }, 60_000 + 5_000 * (o.restartKeys / o.restartRate))
    } catch (err) {
      if (!stuck || attempts >= 3) throw err
      progress(`restart: the build run committed nothing for ${BUILD_STALL_MS / 1000} s (stuck); retrying`)
    } finally {
      clearInterval(watchdog)
    }
    build.process.kill('SIGKILL')
    const killed = await build.exited
    if (killedAt !== undefined && killed.signal !== 'SIGKILL') throw new Error(`restart build process ended with ${JSON.stringify(killed)}, not by SIGKILL`)
  }
  const buildS = (performance.now() - buildStarted) / 1000
  progress(`restart: SIGKILLed after checkpoint ${String(killedAt.checkpoints)} covering ${Number(killedAt.covered).toLocaleString('en')} records (${buildS.toFixed(1)} s); restarting`)

  const compiled = o.restartFromSources ? undefined : compile(root)
  const spawnedAt = wallMs()
  const resume = startChild(compiled ?? SCRIPT, childArgs(o, 'restart-resume', dir), { compiled: compiled !== undefined, pipe: 'embedded' })
  const commit = await resume.waitFor((m) => m.event === 'commit', 120_000)
  resume.process.kill('SIGKILL')
  await resume.exited
  const at = (event: string): number | null => {
    const m = resume.messages.find((x: ChildMessage) => x.event === event)
    return m === undefined ? null : round(Number(m.t) - spawnedAt)
  }
  const restartMs = Number(commit.t) - spawnedAt
  progress(`restart: first checkpoint committed ${Math.round(restartMs)} ms after spawn`)
  return {
    restart_ms: Math.round(restartMs),
    restart_keys: o.restartKeys,
    restart_loaded_ms: at('loaded'),
    restart_restored_ms: at('restored'),
    restart_first_record_ms: at('first-record'),
    restart_count_restore_ms: round(Number(commit.restoreMs)),
    restart_replayed_changelog_records: Number(commit.replayedChangelogRecords),
    restart_first_stall_ms: round(Number(commit.stallMs)),
    restart_build_s: round(buildS),
    restart_build_attempts: attempts,
    restart_state_records_at_kill: Number(killedAt.covered),
    restart_pipeline: RESTART_PIPELINE,
    restart_loader: compiled === undefined ? 'tsx' : 'compiled',
  }
}

/**
 * Compiles this script and everything it imports (the runtime) to JavaScript under `root`, with
 * the compiler and module options of `npm run build` (tsconfig.build.json; emit only, the types
 * are checked by `npm run typecheck`): the restarted process then loads what an installed weir
 * loads (dist/), not TypeScript transpiled by tsx at every start. Not timed.
 */
function compile(root: string): string {
  const out = join(root, 'compiled')
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  const started = performance.now()
  execFileSync(process.execPath, [
    tsc, '--outDir', out, '--rootDir', REPO, '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022',
    '--rewriteRelativeImportExtensions', '--skipLibCheck', '--esModuleInterop', '--resolveJsonModule', '--verbatimModuleSyntax', '--types', 'node', '--noCheck', SCRIPT,
  ], { cwd: REPO, stdio: ['ignore', 2, 2] })
  // The compiled files find the packages where the sources do.
  symlinkSync(join(REPO, 'node_modules'), join(out, 'node_modules'), 'dir')
  progress(`restart: compiled the benchmark and the runtime to JavaScript in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  return join(out, 'benchmarks', 'embedded-throughput.js')
}

function round4(v: number): number {
  return Math.round(v * 10_000) / 10_000
}

async function main(o: BenchOptions): Promise<void> {
  const started = performance.now()
  const root = mkdtempSync(join(tmpdir(), 'weir-bench-'))
  let cleaned = false
  const cleanup = (): void => {
    if (cleaned) return
    cleaned = true
    killChildren()
    if (o.keep) progress(`kept data in ${root}`)
    else rmSync(root, { recursive: true, force: true })
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      cleanup()
      process.exit(130)
    })
  }
  // The runtime under test is what the children load at start: note its revision now.
  // BENCH_GIT_REV names the revision when the tree is an export without .git.
  const info = startRunInfo(['runtime', 'coordinator'], started)
  try {
    const result: Result = {
      benchmark: o.restartOnly ? 'embedded-restart' : 'embedded-wordcount',
      date: new Date().toISOString().slice(0, 10),
    }
    if (!o.restartOnly) Object.assign(result, await throughput(o, root))
    if (o.restartOnly || o.withRestart) Object.assign(result, await restart(o, root))
    Object.assign(result, {
      ...info.finish(),
    })
    process.stdout.write(JSON.stringify(result) + '\n')
  } finally {
    cleanup()
  }
}

const options = parseOptions(process.argv.slice(2))
if (options.phase !== undefined) {
  await runPhase(options)
  process.exit(0)
} else {
  await main(options)
}
