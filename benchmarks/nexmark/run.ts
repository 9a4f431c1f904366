/**
 * Nexmark on weir against Flink, on this machine in one run: for each query, the reference
 * answer (a plain loop), weir (embedded pipe, one worker, every stage one actor) and the
 * Flink peer (MiniCluster with one slot, RocksDB, exactly-once checkpoints at weir's default
 * interval), both fed by the same generator rules and seed. Prints one JSON line per query
 * with events/s and CPU seconds of each and `ratio_vs_flink` (weir events per CPU-second /
 * Flink events per CPU-second); exits 1 when either system's output differs from the
 * reference or the two generators disagree. See benchmarks/nexmark/README.md.
 *
 * @example
 * npm run bench:nexmark
 * npm run bench:nexmark -- --events 1m --queries q0,q1
 */
import { spawn } from 'node:child_process'
import { startEnv, startFlags } from '../../runtime/heap.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { countArg, flagArg, readArgs } from '../lib/options.ts'
import { startRunInfo } from '../lib/run-info.ts'
import { progress, round } from '../lib/stats.ts'
import { buildFlinkPeer, flinkGeneratorChecksum, runFlinkQuery, type FlinkQueryReport } from './flink-peer.ts'
import { checksumOfEvents } from './generator.ts'
import { QUERY_NAMES, type QueryName } from './queries.ts'
import { referenceTally } from './reference.ts'
import type { WeirQueryReport } from './weir-run.ts'
import { DEFAULT_EPOCH_INTERVAL_MS } from '../../coordinator/epochs.ts'

const HERE = dirname(fileURLToPath(import.meta.url))
/** weir's default checkpoint interval (RunOptions.epochIntervalMs), which the Flink peer uses too. */
const CHECKPOINT_MS = DEFAULT_EPOCH_INTERVAL_MS
/** Events whose generator checksum the two generators must agree on before anything is measured. */
const GENERATOR_CHECK_EVENTS = 100_000
/** Events of the startup runs: enough to start every stage, too few to cost anything. */
const STARTUP_EVENTS = 100

const USAGE = `usage: npm run bench:nexmark -- [options]
  --events N       events per query (default 1m; env BENCH_EVENTS; k/m suffixes)
  --queries LIST   comma-separated, from ${QUERY_NAMES.join(',')} (default all)
  --seed S         generator seed, a 32-bit integer (default 42)
  --no-flink       run weir and the reference only (no ratio)
  --no-startup     skip the startup runs (q0 over ${STARTUP_EVENTS} events on each system, once), whose
                   CPU time the *_excluding_startup figures subtract
  --keep           keep the temp data dir
Prints one JSON line per query. weir runs on the embedded pipe in one worker, every stage
one actor (parallelism 1); Flink on a MiniCluster with one slot (parallelism 1), RocksDB
state, exactly-once checkpoints every ${CHECKPOINT_MS} ms (weir's default interval).
`

interface Options { events: number; queries: QueryName[]; seed: number; flink: boolean; startup: boolean; keep: boolean }

function parse(argv: string[]): Options {
  const args = readArgs(argv, ['events', 'queries', 'seed'], ['no-flink', 'no-startup', 'keep'], USAGE)
  const queries = (args.values.get('queries') ?? QUERY_NAMES.join(',')).split(',').map((q) => q.trim()).filter((q) => q !== '')
  for (const q of queries) if (!(QUERY_NAMES as readonly string[]).includes(q)) throw new Error(`--queries: unknown query '${q}' (known: ${QUERY_NAMES.join(', ')})\n${USAGE}`)
  const seed = Number(args.values.get('seed') ?? 42)
  if (!Number.isInteger(seed) || seed < -(2 ** 31) || seed >= 2 ** 31) throw new Error(`--seed: must be a 32-bit integer, got ${args.values.get('seed')}`)
  const events = countArg(args, process.env, 'events') ?? 1_000_000
  if (events >= 2 ** 31) throw new Error('--events: the generator rules cover events 0 .. 2^31 - 1')
  return { events, queries: queries as QueryName[], seed, flink: !flagArg(args, process.env, 'no-flink'), startup: !flagArg(args, process.env, 'no-startup'), keep: flagArg(args, process.env, 'keep') }
}

/** Runs one query on weir in a child process, so its CPU time is weir's alone. */
async function runWeirChild(query: QueryName, o: Options, root: string, events = o.events): Promise<WeirQueryReport> {
  const child = spawn(process.execPath, [...startFlags('embedded', process.execArgv), '--import', 'tsx', join(HERE, 'weir-run.ts'), '--query', query, '--events', String(events), '--seed', String(o.seed), '--data-dir', root, '--epoch-ms', String(CHECKPOINT_MS)], { env: { ...process.env, ...startEnv('embedded', process.env) }, stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', (c) => resolve(c))
  })
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (code !== 0 || line === undefined) throw new Error(`weir's ${query} run exited with code ${code}${line === undefined ? ' and no report' : `: ${line}`}`)
  return JSON.parse(line) as WeirQueryReport
}

function side(prefix: string, r: WeirQueryReport | FlinkQueryReport, events: number): Record<string, number> {
  return {
    [`${prefix}_events_per_s`]: round(events / r.seconds),
    [`${prefix}_seconds`]: round(r.seconds),
    [`${prefix}_cpu_s`]: round(r.cpu_s),
    [`${prefix}_events_per_cpu_s`]: round(events / r.cpu_s),
    [`${prefix}_peak_rss_mib`]: round(r.peak_rss_mib),
  }
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2))
  const root = mkdtempSync(join(tmpdir(), 'weir-nexmark-'))
  let failed = false
  try {
    if (o.flink) {
      buildFlinkPeer()
      const checkCount = Math.min(o.events, GENERATOR_CHECK_EVENTS)
      const [java, ts] = [await flinkGeneratorChecksum(o.seed, checkCount), checksumOfEvents(o.seed, checkCount)]
      if (java !== ts) throw new Error(`the Java and TS generators disagree on the first ${checkCount} events of seed ${o.seed}: checksum ${java} vs ${ts}`)
      progress(`generators agree: checksum ${ts} of the first ${checkCount} events of seed ${o.seed}`)
    }
    // What starting and stopping costs each system (process start not included: both measure
    // from the pipeline's start / env.execute()), so a short run's ratio can be read without it.
    let startup: { weir: number; flink: number } | undefined
    if (o.startup && o.flink) {
      progress(`startup runs: q0 over ${STARTUP_EVENTS} events on weir and on Flink`)
      const weir = await runWeirChild('q0', o, root, STARTUP_EVENTS)
      const dir = mkdtempSync(join(root, 'flink-startup-'))
      const flink = await runFlinkQuery('q0', { events: STARTUP_EVENTS, seed: o.seed, dir, checkpointMs: CHECKPOINT_MS })
      startup = { weir: weir.cpu_s, flink: flink.cpu_s }
      progress(`startup CPU: weir ${round(weir.cpu_s)} s, Flink ${round(flink.cpu_s)} s`)
    }
    for (const query of o.queries) {
      const info = startRunInfo(['runtime', 'processors', 'benchmarks/nexmark'])
      progress(`${query}: reference answer over ${o.events.toLocaleString('en')} events`)
      const ref = referenceTally(query, o.seed, o.events)
      progress(`${query}: weir`)
      const weir = await runWeirChild(query, o, root)
      const failures: string[] = []
      if (weir.outputs !== ref.count || weir.checksum !== ref.sum) failures.push(`weir ${query}: ${weir.outputs} outputs, checksum ${weir.checksum}; the reference has ${ref.count}, ${ref.sum}`)
      const result: Record<string, unknown> = { bench: 'nexmark', query, events: o.events, seed: o.seed, checkpoint_ms: CHECKPOINT_MS, parallelism: 1, outputs: ref.count, checksum: ref.sum, ...side('weir', weir, o.events) }
      if (o.flink) {
        progress(`${query}: Flink`)
        const dir = mkdtempSync(join(root, `flink-${query}-`))
        const flink = await runFlinkQuery(query, { events: o.events, seed: o.seed, dir, checkpointMs: CHECKPOINT_MS })
        rmSync(dir, { recursive: true, force: true })
        if (flink.outputs !== ref.count || flink.checksum !== ref.sum) failures.push(`Flink ${query}: ${flink.outputs} outputs, checksum ${flink.checksum}; the reference has ${ref.count}, ${ref.sum}`)
        Object.assign(result, side('flink', flink, o.events), { ratio_vs_flink: round(flink.cpu_s / weir.cpu_s), goal_ratio: 1.0 })
        if (startup !== undefined) {
          Object.assign(result, {
            weir_startup_cpu_s: round(startup.weir),
            flink_startup_cpu_s: round(startup.flink),
            ratio_vs_flink_excluding_startup: round((flink.cpu_s - startup.flink) / (weir.cpu_s - startup.weir)),
          })
        }
      }
      result.exact = failures.length === 0
      if (failures.length > 0) result.failures = failures
      process.stdout.write(JSON.stringify({ ...result, ...info.finish() }) + '\n')
      for (const f of failures) process.stderr.write(`wrong: ${f}\n`)
      failed ||= failures.length > 0
    }
  } finally {
    if (o.keep) progress(`kept ${root}`)
    else rmSync(root, { recursive: true, force: true })
  }
  if (failed) process.exitCode = 1
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
