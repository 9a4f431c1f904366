/**
 * The client libraries the SQL sinks could use, measured the way the sinks write: batches of
 * multi-row INSERTs with bound parameters, each batch in a transaction of its own (BEGIN,
 * INSERT, COMMIT) on one connection, against the running services. PostgreSQL: `pg` and
 * `postgres`; MariaDB: `mysql2` and `mariadb`. The clients take turns by round (so the machine's
 * load falls on all of them alike) and the line reports each one's median rows/s over the
 * rounds. Prints one JSON line on stdout.
 *
 * @example
 * node --import tsx benchmarks/sink-clients.ts
 * node --import tsx benchmarks/sink-clients.ts --rows 500 --batches 40 --rounds 5
 */
import { parseArgs } from 'node:util'
import * as mariadb from 'mariadb'
import mysql from 'mysql2/promise'
import pg from 'pg'
import postgres from 'postgres'
import { startRunInfo } from './lib/run-info.ts'
import { progress, round } from './lib/stats.ts'

const { values: args } = parseArgs({ options: { rows: { type: 'string', default: '500' }, batches: { type: 'string', default: '40' }, rounds: { type: 'string', default: '5' } } })
const ROWS = Number(args.rows)
const BATCHES = Number(args.batches)
const ROUNDS = Number(args.rounds)
const PG_URL = process.env.WEIR_POSTGRES_URL ?? 'postgres://weir:weir@127.0.0.1:5432/weir'
const MARIADB_URL = process.env.WEIR_MARIADB_URL ?? 'mysql://weir:weir@127.0.0.1:3306/weir'
const info = startRunInfo(['processors/sinks'])
const TABLE = `bench_sink_clients_${process.pid}`

/** A client under test: runs one batch (a transaction with one multi-row INSERT) and clears the table. */
interface Client {
  batch(sql: string, params: unknown[]): Promise<void>
  exec(sql: string): Promise<void>
  close(): Promise<void>
}

function insertSql(placeholder: (n: number) => string): string {
  const tuples: string[] = []
  for (let i = 0; i < ROWS; i++) tuples.push(`(${placeholder(i * 4 + 1)}, ${placeholder(i * 4 + 2)}, ${placeholder(i * 4 + 3)}, ${placeholder(i * 4 + 4)})`)
  return `INSERT INTO ${TABLE} (id, k, v, payload) VALUES ${tuples.join(', ')}`
}

function params(batch: number): unknown[] {
  const out: unknown[] = []
  for (let i = 0; i < ROWS; i++) {
    const id = batch * ROWS + i
    out.push(id, `key-${id % 997}`, id * 7, `payload of row ${id}: ${'x'.repeat(40)}`)
  }
  return out
}

const clients: Record<string, { store: 'postgres' | 'mariadb'; open(): Promise<Client> }> = {
  pg: {
    store: 'postgres',
    open: async () => {
      const c = new pg.Client({ connectionString: PG_URL })
      await c.connect()
      return {
        batch: async (sql, p) => {
          await c.query('BEGIN')
          await c.query(sql, p)
          await c.query('COMMIT')
        },
        exec: async (sql) => void (await c.query(sql)),
        close: () => c.end(),
      }
    },
  },
  postgres: {
    store: 'postgres',
    open: async () => {
      const sql = postgres(PG_URL, { max: 1, onnotice: () => undefined })
      return {
        batch: async (text, p) => {
          await sql.begin(async (tx) => {
            await tx.unsafe(text, p as postgres.ParameterOrJSON<never>[])
          })
        },
        exec: async (text) => void (await sql.unsafe(text)),
        close: () => sql.end(),
      }
    },
  },
  mysql2: {
    store: 'mariadb',
    open: async () => {
      const c = await mysql.createConnection(MARIADB_URL)
      return {
        batch: async (sql, p) => {
          await c.beginTransaction()
          await c.query(sql, p)
          await c.commit()
        },
        exec: async (sql) => void (await c.query(sql)),
        close: () => c.end(),
      }
    },
  },
  mariadb: {
    store: 'mariadb',
    open: async () => {
      const u = new URL(MARIADB_URL)
      const c = await mariadb.createConnection({ host: u.hostname, port: Number(u.port), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password), database: u.pathname.slice(1) })
      return {
        batch: async (sql, p) => {
          await c.beginTransaction()
          await c.query(sql, p)
          await c.commit()
        },
        exec: async (sql) => void (await c.query(sql)),
        close: () => c.end(),
      }
    },
  },
}

const pgSql = insertSql((n) => `$${n}`)
const mariaSql = insertSql(() => '?')
const batchParams = Array.from({ length: BATCHES }, (_, b) => params(b))
const perRound: Record<string, number[]> = Object.fromEntries(Object.keys(clients).map((n) => [n, []]))

const opened: Record<string, Client> = {}
for (const [name, def] of Object.entries(clients)) opened[name] = await def.open()
try {
  await opened.pg!.exec(`DROP TABLE IF EXISTS ${TABLE}`)
  await opened.pg!.exec(`CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, k text NOT NULL, v bigint NOT NULL, payload text)`)
  await opened.mysql2!.exec(`DROP TABLE IF EXISTS ${TABLE}`)
  await opened.mysql2!.exec(`CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, k varchar(64) NOT NULL, v bigint NOT NULL, payload text) ENGINE=InnoDB`)
  for (let r = 0; r <= ROUNDS; r++) {
    for (const [name, def] of Object.entries(clients)) {
      const c = opened[name]!
      await c.exec(`DELETE FROM ${TABLE}`)
      const t0 = performance.now()
      for (const p of batchParams) await c.batch(def.store === 'postgres' ? pgSql : mariaSql, p)
      const s = (performance.now() - t0) / 1000
      // Round 0 warms up connections, prepared plans and the JIT; it is not counted.
      if (r > 0) perRound[name]!.push((ROWS * BATCHES) / s)
      progress(`round ${r} ${name}: ${round((ROWS * BATCHES) / s)} rows/s`)
    }
  }
} finally {
  await opened.pg!.exec(`DROP TABLE IF EXISTS ${TABLE}`).catch(() => undefined)
  await opened.mysql2!.exec(`DROP TABLE IF EXISTS ${TABLE}`).catch(() => undefined)
  for (const c of Object.values(opened)) await c.close()
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}
const figures = Object.fromEntries(Object.entries(perRound).map(([n, xs]) => [n, { median_rows_per_s: round(median(xs)), rounds_rows_per_s: xs.map(round) }]))
process.stdout.write(JSON.stringify({ benchmark: 'sink-clients', rows_per_batch: ROWS, batches: BATCHES, rounds: ROUNDS, clients: figures, ...info.finish() }) + '\n')
