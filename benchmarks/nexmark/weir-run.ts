/**
 * Runs one Nexmark query on weir (embedded pipe, one worker, every stage one actor) in this
 * process and prints one JSON line: outputs, their checksum, wall seconds and this process's
 * CPU seconds from pipeline start to the end of input. run.ts starts it as a child so the
 * CPU figure holds weir alone (not the reference loop or the Flink peer's driver).
 *
 * @example
 * node --import tsx benchmarks/nexmark/weir-run.ts --query q5 --events 100000 --seed 42 --data-dir /tmp/nx
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { startEmbedded } from '../../index.ts'
import { tuneHeap } from '../../runtime/heap.ts'
import { Tally } from './generator.ts'
import { QUERY_NAMES, nexmarkPipeline, type QueryName } from './queries.ts'

/** What one weir run of a query reports. */
export interface WeirQueryReport {
  query: QueryName
  events: number
  outputs: number
  checksum: number
  seconds: number
  cpu_s: number
  peak_rss_mib: number
}

/** Runs `query` over `events` events in this process, in a fresh data dir under `root`. */
export async function runWeirQuery(query: QueryName, o: { events: number; seed: number; root: string; epochMs?: number }): Promise<WeirQueryReport> {
  const dataDir = mkdtempSync(join(o.root, `weir-${query}-`))
  const tally = new Tally()
  const pipeline = nexmarkPipeline(query, { seed: o.seed, events: o.events, tally })
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  try {
    const run = await startEmbedded(pipeline, { dataDir, log: pino({ level: 'warn' }, pino.destination(2)), ...(o.epochMs === undefined ? {} : { epochIntervalMs: o.epochMs }) })
    const result = await run.done
    if (result.outcome !== 'finished') throw new Error(`the ${query} pipeline ended ${result.outcome}, not finished`)
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  return { query, events: o.events, outputs: tally.count, checksum: tally.sum, seconds, cpu_s: (cpu.user + cpu.system) / 1e6, peak_rss_mib: process.resourceUsage().maxRSS / 1024 }
}

async function main(): Promise<void> {
  // The V8 heap settings `weir run` applies on the embedded pipe.
  tuneHeap('embedded')
  const { values } = parseArgs({ options: { query: { type: 'string' }, events: { type: 'string' }, seed: { type: 'string' }, 'data-dir': { type: 'string' }, 'epoch-ms': { type: 'string' } } })
  const query = values.query as QueryName
  if (!QUERY_NAMES.includes(query)) throw new Error(`--query must be one of ${QUERY_NAMES.join(', ')}`)
  const root = values['data-dir'] ?? mkdtempSync(join(tmpdir(), 'weir-nexmark-'))
  const report = await runWeirQuery(query, { events: Number(values.events), seed: Number(values.seed), root, ...(values['epoch-ms'] === undefined ? {} : { epochMs: Number(values['epoch-ms']) }) })
  process.stdout.write(JSON.stringify(report) + '\n')
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(1)
  })
}
