/**
 * exactly-once into a MariaDB (or MySQL) InnoDB table: each record's row is written once
 * (appended in insert mode, inserted or updated by key in upsert mode, deleted by key for a
 * tombstone), across crashes, restarts and a worker that lost its actor. Every write is one
 * InnoDB transaction holding the rows and the actor's progress row (pipeline, stage,
 * partition → generation, input positions, checkpoint, epoch, pending dead letters) in the
 * progress table; a restarted actor resumes from that row and passes over the input it
 * holds, so appends are not repeated, and a write of an older instance (a zombie) is refused
 * by the generation in the row (its instance stops, fenced). A row MariaDB refuses (SQLSTATE
 * class 22 or 23, or a value strict mode refuses: a constraint, a NOT NULL column, a bad
 * value) goes to the stage's dead-letter topic with the database's error; the rest of its
 * batch is written. The guarantee needs a transactional engine (InnoDB) and strict mode
 * (MariaDB's default STRICT_TRANS_TABLES): without it MariaDB stores a bad value truncated
 * instead of refusing it. While MariaDB does not answer the actor is held back (retried
 * with backoff, the monitor shows the stage waiting for it); nothing is dropped.
 */
import * as mariadb from 'mariadb'
import type { LifecycleContext } from '../../index.ts'
import { SqlSink, type ResolvedConnection, type SqlConnection, type SqlDialect, type SqlPool, type SqlSinkOptions } from './sql/sql-sink.ts'

export type { SqlSinkOptions as MariaDbSinkOptions } from './sql/sql-sink.ts'

/**
 * Data errors without a class 22/23 SQLSTATE (MariaDB gives HY000): 1364 no default for a NOT
 * NULL column, 1366 incorrect value for a column, 1265 data truncated, 1367 illegal value,
 * 1411 wrong value for a type, 4025 CHECK constraint failed.
 */
const DATA_ERRNOS = new Set([1364, 1366, 1265, 1367, 1411, 4025])

/**
 * Errors of a server that does not answer: 1040 too many connections, 1053 server shutdown,
 * 1927 connection killed, 2002/2003/2006/2013 connection refused, gone or lost, 1205/1213 a
 * lock wait or deadlock to retry; the connector's own 45001 connection closed, 45004
 * destroyed, 45009 socket closed, 45012 connect timeout, 45013 closed during a command, 45019
 * socket error, 45026 socket timeout, 45028 no pool connection in time, 45039 pool
 * initialisation timeout, 45061 the pool cannot connect.
 */
const UNAVAILABLE_ERRNOS = new Set([1040, 1053, 1927, 2002, 2003, 2006, 2013, 1205, 1213, 45001, 45004, 45009, 45012, 45013, 45019, 45026, 45028, 45039, 45061])

interface MariaError {
  errno?: number
  sqlState?: string
  code?: string
  text?: string
  message?: string
  cause?: unknown
}

export const mariadbDialect: SqlDialect = {
  name: 'MariaDB',
  maxParams: 65535,
  quote: (id) => `\`${id.replace(/`/g, '``')}\``,
  placeholder: () => '?',
  createProgressTable: (table) => [
    `CREATE TABLE IF NOT EXISTS ${table} (pipeline varchar(255) NOT NULL, stage varchar(255) NOT NULL, \`partition\` int NOT NULL, generation bigint NOT NULL, checkpoint bigint NOT NULL, epoch bigint NOT NULL, positions longtext NOT NULL, dead_letters longtext NOT NULL, updated_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), PRIMARY KEY (pipeline, stage, \`partition\`)) ENGINE=InnoDB`,
  ],
  insertProgressIfMissing: (table) => `INSERT INTO ${table} (pipeline, stage, \`partition\`, generation, checkpoint, epoch, positions, dead_letters) VALUES (?, ?, ?, 0, 0, 0, '{}', '[]') ON DUPLICATE KEY UPDATE generation = generation`,
  upsert: (table, columns, key, rows) => {
    const q = mariadbDialect.quote
    const tuple = `(${columns.map(() => '?').join(', ')})`
    const updates = columns.filter((c) => !key.includes(c)).map((c) => `${q(c)} = VALUES(${q(c)})`)
    return `INSERT INTO ${table} (${columns.map(q).join(', ')}) VALUES ${Array.from({ length: rows }, () => tuple).join(', ')} ON DUPLICATE KEY UPDATE ${updates.length === 0 ? `${q(key[0]!)} = ${q(key[0]!)}` : updates.join(', ')}`
  },
  isDataError: (err) => {
    const e = err as MariaError
    if (typeof e?.sqlState === 'string' && (e.sqlState.startsWith('22') || e.sqlState.startsWith('23'))) return true
    return typeof e?.errno === 'number' && DATA_ERRNOS.has(e.errno)
  },
  isUnavailable: (err) => {
    const e = err as MariaError
    if (typeof e?.errno === 'number' && UNAVAILABLE_ERRNOS.has(e.errno)) return true
    // 28000 (access denied) is class 28, not 08: refused credentials stop the actor.
    return typeof e?.sqlState === 'string' && e.sqlState.startsWith('08')
  },
  errorDetail: (err) => {
    const e = err as MariaError
    const detail: Record<string, unknown> = { sqlState: e.sqlState, errno: e.errno, code: e.code, message: e.text ?? e.message }
    // MariaDB names the constraint only in the text: "CONSTRAINT `x` failed for `db`.`t`", "Column 'c' cannot be null".
    const text = e.text ?? e.message ?? ''
    const constraint = /CONSTRAINT `([^`]+)`/.exec(text)?.[1] ?? /for key '([^']+)'/.exec(text)?.[1]
    const column = /Column '([^']+)'/.exec(text)?.[1] ?? /column `?'?([A-Za-z0-9_$]+)`?'? at row/.exec(text)?.[1] ?? /Field '([^']+)'/.exec(text)?.[1]
    if (constraint !== undefined) detail.constraint = constraint
    if (column !== undefined) detail.column = column
    return detail
  },
  bindValue: (v) => {
    if (v === undefined) return null
    // Objects and arrays as JSON (the connector would expand an array into a list of values).
    if (v !== null && typeof v === 'object' && !(v instanceof Date) && !Buffer.isBuffer(v)) return JSON.stringify(v)
    return v
  },
  openPool: (c, log) => openMariaDbPool(c, log),
}

function openMariaDbPool(c: ResolvedConnection, log: LifecycleContext['log']): SqlPool {
  const url = c.url === undefined ? undefined : new URL(c.url)
  const host = c.host ?? url?.hostname ?? '127.0.0.1'
  const port = c.port ?? (url?.port ? Number(url.port) : 3306)
  const pool = mariadb.createPool({
    host,
    port,
    user: c.user ?? (url === undefined ? undefined : decodeURIComponent(url.username)),
    database: c.database ?? (url === undefined ? undefined : decodeURIComponent(url.pathname.slice(1))),
    password: c.password ?? (url?.password ? decodeURIComponent(url.password) : undefined),
    ...(c.tls === undefined ? {} : { ssl: c.tls }),
    connectionLimit: c.pool,
    minimumIdle: 0,
    acquireTimeout: 10_000,
    connectTimeout: 5_000,
    bigIntAsNumber: false,
    // Row values stay out of error messages (which go to logs and dead letters; the dead letter keeps the record itself).
    logParam: false,
  })
  // The pool reports connections it failed to make, and a connection the server ends while idle
  // (a shutdown) reports it too: unheard, either would crash the process. Writes see their own errors.
  ;(pool as unknown as NodeJS.EventEmitter).on('error', (err: Error) => log.warn({ err: err.message }, 'MariaDB pool cannot connect'))
  pool.on('connection', (conn) => void conn.on('error', (err) => log.warn({ err: err.message }, 'MariaDB connection lost')))
  return {
    where: `${host}:${port}`,
    transaction: async (fn) => {
      const conn = await pool.getConnection()
      let broken = false
      try {
        await conn.beginTransaction()
        const sqlConn: SqlConnection = {
          query: async (sql, params) => {
            const r: unknown = await conn.query(sql, params as unknown[])
            return Array.isArray(r) ? (r as Array<Record<string, unknown>>) : []
          },
          execute: async (sql, params) => {
            const r = (await conn.query(sql, params as unknown[])) as { affectedRows?: number }
            return Number(r.affectedRows ?? 0)
          },
        }
        const result = await fn(sqlConn)
        await conn.commit()
        return result
      } catch (err) {
        broken = true
        await conn.rollback().catch(() => undefined)
        throw err
      } finally {
        // After an error the connection may be half gone: drop it rather than hand it out again.
        if (broken) conn.destroy()
        else await conn.release()
      }
    },
    close: () => pool.end(),
  }
}

/**
 * Writes records to a MariaDB (or MySQL) InnoDB table, exactly once (see the file's first
 * comment): appends in `mode: 'insert'`, inserts or updates by `key` in `mode: 'upsert'` (a
 * tombstone, a record whose value is null, deletes by key). The progress table (default
 * `weir_sink_progress`) is created if missing.
 *
 * @example
 * stream.to('orders-db', () => new MariaDbSink<Order>({
 *   connection: { urlEnv: 'SHOP_DB_URL' },      // mysql://weir:secret@db:3306/shop, from the environment
 *   table: 'orders',
 *   mode: 'upsert',
 *   key: ['order_id'],
 *   columns: (r) => ({ order_id: r.value.id, total: r.value.total, status: r.value.status }),
 * }))
 */
export class MariaDbSink<In = unknown> extends SqlSink<In> {
  constructor(options: SqlSinkOptions<In>) {
    super(mariadbDialect, options)
  }
}
