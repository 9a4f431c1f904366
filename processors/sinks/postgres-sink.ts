/**
 * exactly-once into a PostgreSQL table: each record's row is written once (appended in
 * insert mode, inserted or updated by key in upsert mode, deleted by key for a tombstone),
 * across crashes, restarts and a worker that lost its actor. Every write is one PostgreSQL
 * transaction holding the rows and the actor's progress row (pipeline, stage, partition →
 * generation, input positions, checkpoint, epoch, pending dead letters) in the progress
 * table; a restarted actor resumes from that row and passes over the input it holds, so
 * appends are not repeated, and a write of an older instance (a zombie) is refused by the
 * generation in the row (its instance stops, fenced). A row PostgreSQL refuses (SQLSTATE
 * class 22 or 23: a constraint, a bad value) goes to the stage's dead-letter topic with the
 * database's error; the rest of its batch is written. While PostgreSQL does not answer the
 * actor is held back (retried with backoff, the monitor shows the stage waiting for it);
 * nothing is dropped. Readers see a batch's rows when its transaction commits, which can be
 * before the pipe's checkpoint does (the table is the truth, not the pipe).
 */
import pg from 'pg'
import type { LifecycleContext } from '../../index.ts'
import { SqlSink, type ResolvedConnection, type SqlConnection, type SqlDialect, type SqlPool, type SqlSinkOptions } from './sql/sql-sink.ts'

export type { SqlSinkOptions as PostgresSinkOptions, SqlConnectionOptions, SqlTlsOptions, SqlValue } from './sql/sql-sink.ts'

/** SQLSTATEs that mean the server is not answering now (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now, 53300 too many connections, 40001/40P01 a transaction to retry); class 08 too. */
const UNAVAILABLE = new Set(['57P01', '57P02', '57P03', '53300', '40001', '40P01'])

/** pg's own errors for a connection that ended or never came (they have no code). */
const LOST = /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection refused|the database system is (starting up|shutting down|in recovery)/i

export const postgresDialect: SqlDialect = {
  name: 'PostgreSQL',
  maxParams: 65535,
  quote: (id) => `"${id.replace(/"/g, '""')}"`,
  placeholder: (n) => `$${n}`,
  createProgressTable: (table) => [
    `CREATE TABLE IF NOT EXISTS ${table} (pipeline text NOT NULL, stage text NOT NULL, "partition" integer NOT NULL, generation bigint NOT NULL, checkpoint bigint NOT NULL, epoch bigint NOT NULL, positions text NOT NULL, dead_letters jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, stage, "partition"))`,
  ],
  insertProgressIfMissing: (table) => `INSERT INTO ${table} (pipeline, stage, "partition", generation, checkpoint, epoch, positions, dead_letters) VALUES ($1, $2, $3, 0, 0, 0, '{}', '[]') ON CONFLICT DO NOTHING`,
  upsert: (table, columns, key, rows) => {
    const q = postgresDialect.quote
    let n = 0
    const tuples = Array.from({ length: rows }, () => `(${columns.map(() => `$${++n}`).join(', ')})`)
    const updates = columns.filter((c) => !key.includes(c)).map((c) => `${q(c)} = EXCLUDED.${q(c)}`)
    return `INSERT INTO ${table} (${columns.map(q).join(', ')}) VALUES ${tuples.join(', ')} ON CONFLICT (${key.map(q).join(', ')}) ${updates.length === 0 ? 'DO NOTHING' : `DO UPDATE SET ${updates.join(', ')}`}`
  },
  isDataError: (err) => {
    const code = sqlState(err)
    return code !== undefined && (code.startsWith('22') || code.startsWith('23'))
  },
  isUnavailable: (err) => {
    const code = sqlState(err)
    if (code !== undefined) return UNAVAILABLE.has(code) || code.startsWith('08')
    return err instanceof Error && LOST.test(err.message)
  },
  errorDetail: (err) => {
    const e = err as pg.DatabaseError
    const detail: Record<string, unknown> = { sqlState: e.code, message: e.message }
    for (const f of ['detail', 'constraint', 'table', 'column', 'schema', 'dataType'] as const) if (e[f] !== undefined) detail[f] = e[f]
    return detail
  },
  bindValue: (v) => {
    if (v === undefined) return null
    // Objects as JSON (pg would too); arrays stay arrays (PostgreSQL array columns).
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date) && !Buffer.isBuffer(v)) return JSON.stringify(v)
    return v
  },
  openPool: (c, log) => openPostgresPool(c, log),
}

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

function openPostgresPool(c: ResolvedConnection, log: LifecycleContext['log']): SqlPool {
  const pool = new pg.Pool({
    ...(c.url === undefined ? {} : { connectionString: c.url }),
    ...(c.host === undefined ? {} : { host: c.host }),
    ...(c.port === undefined ? {} : { port: c.port }),
    ...(c.user === undefined ? {} : { user: c.user }),
    ...(c.database === undefined ? {} : { database: c.database }),
    ...(c.password === undefined ? {} : { password: c.password }),
    ...(c.tls === undefined ? {} : { ssl: c.tls }),
    max: c.pool,
    connectionTimeoutMillis: 10_000,
    application_name: 'weir',
  })
  // A connection that breaks (the server restarts) must not crash the process: the query on it fails, and the write is retried.
  pool.on('error', (err) => log.warn({ err: err.message }, 'PostgreSQL connection lost'))
  pool.on('connect', (client) => client.on('error', () => undefined))
  const where = (() => {
    if (c.host !== undefined) return `${c.host}:${c.port ?? 5432}`
    try {
      const u = new URL(c.url!)
      return `${u.hostname}:${u.port || 5432}`
    } catch {
      return 'PostgreSQL'
    }
  })()
  return {
    where,
    transaction: async (fn) => {
      const client = await pool.connect()
      let broken: Error | undefined
      try {
        await client.query('BEGIN')
        const conn: SqlConnection = {
          query: async (sql, params) => (await client.query(sql, params as unknown[])).rows as Array<Record<string, unknown>>,
          execute: async (sql, params) => (await client.query(sql, params as unknown[])).rowCount ?? 0,
        }
        const result = await fn(conn)
        await client.query('COMMIT')
        return result
      } catch (err) {
        broken = err as Error
        await client.query('ROLLBACK').catch(() => undefined)
        throw err
      } finally {
        // After an error the connection may be half gone: drop it rather than hand it out again.
        client.release(broken)
      }
    },
    close: () => pool.end(),
  }
}

/**
 * Writes records to a PostgreSQL table, exactly once (see the file's first comment):
 * appends in `mode: 'insert'`, inserts or updates by `key` in `mode: 'upsert'` (a tombstone,
 * a record whose value is null, deletes by key). The progress table (default
 * `weir_sink_progress`) is created if missing.
 *
 * @example
 * stream.to('orders-db', () => new PostgresSink<Order>({
 *   connection: { host: 'db', port: 5432, user: 'weir', database: 'shop', passwordEnv: 'SHOP_DB_PASSWORD' },
 *   table: 'orders',
 *   mode: 'upsert',
 *   key: ['order_id'],
 *   columns: (r) => ({ order_id: r.value.id, total: r.value.total, status: r.value.status }),
 * }))
 */
export class PostgresSink<In = unknown> extends SqlSink<In> {
  constructor(options: SqlSinkOptions<In>) {
    super(postgresDialect, options)
  }
}
