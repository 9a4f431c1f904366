/**
 * Sink throughput: rows/s into PostgreSQL and into Redis through weir's exactly-once sinks
 * (an embedded pipeline whose sink stage reads a pre-loaded topic, checkpoints every
 * second), next to a raw
 * loop in the same run that writes the same rows with the same client in the same batch sizes
 * without weir (PostgreSQL: BEGIN, one multi-row INSERT, COMMIT per batch; Redis: one
 * MULTI/EXEC of the batch's HSETs per batch). `pg_ratio` and `redis_ratio` are weir / raw.
 * Each side writes into a fresh table or key space; both are checked to hold every row once.
 * Prints exactly one JSON line on stdout; progress goes to stderr.
 *
 * @example
 * npm run bench:sinks
 * node --import tsx benchmarks/sinks.ts --rows 200000 --batch 500 --only redis
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import pg from 'pg'
import { Pipeline, startEmbedded, type Processor, type Stream } from '../index.ts'
import { GeneratorSource, PostgresSink, RedisSink } from '../processors/index.ts'
import { printResult, startRunInfo } from './lib/run-info.ts'
import { progress, round } from './lib/stats.ts'
import { pino } from 'pino'

const silent = pino({ level: 'warn' })

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '500' },
    'epoch-ms': { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '2' },
    only: { type: 'string' },
    'pg-url': { type: 'string', default: process.env.WEIR_POSTGRES_URL ?? 'postgres://weir:weir@127.0.0.1:5432/weir' },
    'redis-url': { type: 'string', default: process.env.WEIR_REDIS_URL ?? 'redis://127.0.0.1:6379' },
  },
})
const ROWS = Number(args.rows)
const BATCH = Number(args.batch)
const EPOCH_MS = Number(args['epoch-ms'])
const ROUNDS = Number(args.rounds)
const info = startRunInfo(['runtime', 'processors', 'benchmarks'])
const tag = `b${process.pid}`

/** Row i: what both sides write. */
interface Row { id: number; symbol: string; price: number; at: number }
const rowAt = (i: number): Row => ({ id: i, symbol: `S${i % 500}`, price: Math.round((100 + (i % 977) / 10) * 100) / 100, at: 1_767_225_600_000 + i })

function rowsPipeline(name: string): { pipeline: Pipeline; rows: Stream<Row> } {
  const pipeline = new Pipeline(name)
  const rows = pipeline.source<Row>('rows', () => new GeneratorSource<Row>({ count: ROWS, generate: (i) => ({ key: String(i), value: rowAt(i), timestamp: 1_767_225_600_000 + i }) }))
  return { pipeline, rows }
}

/**
 * Pre-loads the rows into the `rows` stage's topic (not timed), then runs the pipeline with
 * the sink stage added on the same data dir: the source restores as finished, so only the
 * sink stage works (it reads the pipe, batches and writes), as in bench:embedded. Resolves
 * with the wall time of that run, ms.
 */
async function throughWeir(dataDir: string, name: string, sink: () => Processor<Row, never>): Promise<number> {
  const preload = await startEmbedded(rowsPipeline(name).pipeline, { dataDir, epochIntervalMs: 200, log: silent })
  await preload.done
  const { pipeline, rows } = rowsPipeline(name)
  rows.to('sink', sink)
  const started = performance.now()
  const run = await startEmbedded(pipeline, { dataDir, epochIntervalMs: EPOCH_MS, log: silent })
  const result = await run.done
  const written = Object.entries(result.stats).filter(([id]) => id.startsWith('sink/')).reduce((n, [, s]) => n + s.recordsIn, 0)
  if (written !== ROWS) throw new Error(`the sink stage processed ${written} records, expected ${ROWS}`)
  return performance.now() - started
}

async function postgres(root: string): Promise<Record<string, number>> {
  // The sink takes credentials only from the environment or a file.
  process.env.WEIR_BENCH_PG_URL = args['pg-url']
  const client = new pg.Client({ connectionString: args['pg-url'] })
  await client.connect()
  const table = (side: string, r: number): string => `bench_${tag}_${side}_${r}`
  const create = async (t: string): Promise<void> => void (await client.query(`CREATE TABLE ${t} (id bigint NOT NULL, symbol text NOT NULL, price double precision NOT NULL, at bigint NOT NULL)`))
  let weirMs = Infinity
  let rawMs = Infinity
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const raw = table('raw', r)
      await create(raw)
      const rows = Array.from({ length: ROWS }, (_, i) => rowAt(i))
      const t = performance.now()
      for (let i = 0; i < ROWS; i += BATCH) {
        const part = rows.slice(i, i + BATCH)
        const values: unknown[] = []
        const tuples = part.map((row, j) => (values.push(row.id, row.symbol, row.price, row.at), `($${j * 4 + 1}, $${j * 4 + 2}, $${j * 4 + 3}, $${j * 4 + 4})`))
        await client.query('BEGIN')
        await client.query(`INSERT INTO ${raw} (id, symbol, price, at) VALUES ${tuples.join(', ')}`, values)
        await client.query('COMMIT')
      }
      rawMs = Math.min(rawMs, performance.now() - t)
      await expectRows(client, raw)

      const dir = join(root, `pg-${r}`)
      const name = `bench-pg-${tag}-${r}`
      const through = table('weir', r)
      await create(through)
      const ms = await throughWeir(dir, name, () => new PostgresSink<Row>({ connection: { urlEnv: 'WEIR_BENCH_PG_URL' }, table: through, mode: 'insert', batchRows: BATCH, columns: (rec) => ({ ...rec.value }) }))
      weirMs = Math.min(weirMs, ms)
      await expectRows(client, through)
      progress(`postgres round ${r + 1}: raw ${Math.round(rawMs)} ms, weir ${Math.round(ms)} ms`)
      await client.query(`DROP TABLE ${raw}; DROP TABLE ${through}`)
    }
  } finally {
    await client.end()
  }
  const raw = (ROWS * 1000) / rawMs
  const weir = (ROWS * 1000) / weirMs
  return { pg_rows_per_s: Math.round(weir), pg_raw_rows_per_s: Math.round(raw), pg_ratio: round(weir / raw) }
}

async function expectRows(client: pg.Client, table: string): Promise<void> {
  const r = await client.query(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM ${table}`)
  const { n, d } = r.rows[0] as { n: number; d: number }
  if (n !== ROWS || d !== ROWS) throw new Error(`${table} holds ${n} rows (${d} distinct), expected ${ROWS} once each`)
}

async function redis(root: string): Promise<Record<string, number>> {
  const client = new Redis(args['redis-url'], { maxRetriesPerRequest: 1 })
  const prefix = (side: string, r: number): string => `weir:bench:sinks:${tag}:${side}:${r}:`
  let weirMs = Infinity
  let rawMs = Infinity
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const raw = prefix('raw', r)
      const rows = Array.from({ length: ROWS }, (_, i) => rowAt(i))
      const t = performance.now()
      for (let i = 0; i < ROWS; i += BATCH) {
        const m = client.multi()
        for (const row of rows.slice(i, i + BATCH)) m.hset(`${raw}${row.symbol}`, 'price', String(row.price), 'at', String(row.at), 'id', String(row.id))
        await m.exec()
      }
      rawMs = Math.min(rawMs, performance.now() - t)

      const dir = join(root, `redis-${r}`)
      const name = `bench-redis-${tag}-${r}`
      const through = prefix('weir', r)
      const ms = await throughWeir(dir, name, () => new RedisSink<Row>({ url: args['redis-url'], keyPrefix: through, batchRows: BATCH, commands: (rec) => ({ op: 'hset', key: rec.value.symbol, fields: { price: rec.value.price, at: rec.value.at, id: rec.value.id } }) }))
      weirMs = Math.min(weirMs, ms)
      // Both sides end with the newest row of each symbol.
      for (const p of [raw, through]) {
        const last = await client.hget(`${p}S${(ROWS - 1) % 500}`, 'id')
        if (Number(last) !== ROWS - 1) throw new Error(`${p}: the newest row of its symbol is ${last}, expected ${ROWS - 1}`)
      }
      progress(`redis round ${r + 1}: raw ${Math.round(rawMs)} ms, weir ${Math.round(ms)} ms`)
      for (const p of [raw, through]) {
        const keys = await client.keys(`${p}*`)
        for (let i = 0; i < keys.length; i += 500) await client.del(...keys.slice(i, i + 500))
      }
    }
  } finally {
    client.disconnect()
  }
  const raw = (ROWS * 1000) / rawMs
  const weir = (ROWS * 1000) / weirMs
  return { redis_rows_per_s: Math.round(weir), redis_raw_rows_per_s: Math.round(raw), redis_ratio: round(weir / raw) }
}

const root = mkdtempSync(join(tmpdir(), 'weir-bench-sinks-'))
try {
  const result: Record<string, unknown> = { bench: 'sinks', rows: ROWS, batch_rows: BATCH, epoch_ms: EPOCH_MS, rounds: ROUNDS }
  if (args.only !== 'redis') Object.assign(result, await postgres(root))
  if (args.only !== 'postgres') Object.assign(result, await redis(root))
  printResult(result, info)
} finally {
  rmSync(root, { recursive: true, force: true })
}
