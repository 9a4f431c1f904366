/**
 * The part the PostgreSQL and MariaDB sinks share (see their files for the guarantee): the
 * options and their checks, the progress table, and a write as one database transaction:
 * lock the actor's progress row, check the generation and positions, write the rows as
 * multi-row statements (a refused statement is bisected under savepoints until only the rows
 * the database refuses are left out), move the progress, commit. What differs per database
 * (quoting, upsert syntax, which errors are data errors, the client) is a `SqlDialect`.
 */
import { existsSync, readFileSync } from 'node:fs'
import { ConfigError, SinkError, SinkFencedError, StateCorruptedError, StoreSink, encodePositions, type LifecycleContext, type PendingDeadLetter, type RejectedRow, type SinkActor, type SinkBatch, type SinkClaim, type SinkProgress, type StoreSinkOptions, type StreamRecord, type WriteResult } from '../../../index.ts'

/** A value a column can take (an object or array is written as JSON). */
export type SqlValue = string | number | bigint | boolean | Date | Buffer | null | undefined | { readonly [k: string]: unknown } | readonly unknown[]

/**
 * Where the database is. Give `url` (without a password) or `host`/`port`/`user`/`database`;
 * the password only from the environment (`passwordEnv`, or `urlEnv`: a variable holding the
 * whole URL) or a file (`passwordFile`), never in the pipeline's code.
 */
export interface SqlConnectionOptions {
  url?: string
  /** The name of an environment variable that holds the connection URL (which may hold the password). */
  urlEnv?: string
  host?: string
  port?: number
  user?: string
  database?: string
  /** The name of an environment variable that holds the password. */
  passwordEnv?: string
  /** A file whose content (trailing newline removed) is the password. */
  passwordFile?: string
}

/** TLS to the database: PEM files, and whether the server's certificate must verify (default true). */
export interface SqlTlsOptions {
  ca?: string
  cert?: string
  key?: string
  rejectUnauthorized?: boolean
}

export interface SqlSinkOptions<In> extends StoreSinkOptions {
  connection: SqlConnectionOptions
  /** The table rows go to (`name` or `schema.name`). */
  table: string
  /**
   * The row of a record: column name → value. Throwing sends the record to the dead-letter
   * topic. In upsert mode a tombstone (a record whose value is null or undefined) deletes
   * the row with its key: `columns` is called for it too, and only the key columns are used.
   */
  columns: (record: StreamRecord<In>) => Readonly<Record<string, SqlValue>>
  /** `insert` appends a row per record (default); `upsert` inserts or updates by `key`, and deletes on tombstones. */
  mode?: 'insert' | 'upsert'
  /** The key columns (a primary key or unique index of the table): required in upsert mode. */
  key?: readonly string[]
  /** Connections per actor. Default 2. */
  pool?: number
  tls?: SqlTlsOptions
  /** The table of the actors' progress, created if missing. Default `weir_sink_progress`. */
  progressTable?: string
  /**
   * Statements run once at start, before anything is written: the pipeline's own schema
   * (`CREATE TABLE IF NOT EXISTS …`), so that a pipeline brings the table it writes. They
   * must be safe to run again (every actor runs them at every start). Default none.
   *
   * @example
   * schema: ['CREATE TABLE IF NOT EXISTS signals (symbol text, side text, price numeric, at timestamptz)']
   */
  schema?: readonly string[]
}

/** A row to apply: a write of column values, or (upsert mode) a delete by key. */
export type SqlRow = { readonly op: 'write'; readonly values: Readonly<Record<string, unknown>> } | { readonly op: 'delete'; readonly key: Readonly<Record<string, unknown>> }

/** What a transaction runs statements on. */
export interface SqlConnection {
  query(sql: string, params?: readonly unknown[]): Promise<Array<Record<string, unknown>>>
  /** Runs a statement that changes rows; resolves with how many it changed. */
  execute(sql: string, params?: readonly unknown[]): Promise<number>
}

/** Aborts a fast write: a statement was refused for its rows; the write is done again row group by row group. */
class RowsRefused extends Error {}
/** Aborts a write: the progress row is not at `batch.from` with this generation; why is read after the rollback. */
class ProgressMoved extends Error {}

/** The connection settings the options resolve to, secrets read. */
export interface ResolvedConnection {
  url?: string
  host?: string
  port?: number
  user?: string
  database?: string
  password?: string
  tls?: { ca?: string; cert?: string; key?: string; rejectUnauthorized: boolean }
  pool: number
}

/** What differs between the databases. */
export interface SqlDialect {
  /** `PostgreSQL`, `MariaDB`: for messages. */
  readonly name: string
  /** Most bound parameters in one statement. */
  readonly maxParams: number
  quote(identifier: string): string
  /** The n-th (1-based) parameter's placeholder. */
  placeholder(n: number): string
  /** Statements that create the progress table if it is not there. */
  createProgressTable(table: string): string[]
  /** Inserts the actor's progress row (generation 0, nothing written) unless it is there. */
  insertProgressIfMissing(table: string): string
  /** An upsert of `rows` tuples of `columns`, by `key`. */
  upsert(table: string, columns: readonly string[], key: readonly string[], rows: number): string
  /** Whether the database refused the statement for the data in it (a constraint, a bad value): those rows are dead-lettered. */
  isDataError(err: unknown): boolean
  /** Whether the database did not answer (connection refused or lost, shutting down, a deadlock to retry). */
  isUnavailable(err: unknown): boolean
  /** Plain fields of the database's error, kept with the dead letter. */
  errorDetail(err: unknown): Record<string, unknown>
  /** A value as the client should bind it. */
  bindValue(value: unknown): unknown
  /** Opens the connection pool. */
  openPool(connection: ResolvedConnection, log: LifecycleContext['log']): SqlPool
}

export interface SqlPool {
  /** Runs `fn` in one transaction on one connection: COMMIT when it returns, ROLLBACK (or a dropped connection) when it throws. */
  transaction<T>(fn: (c: SqlConnection) => Promise<T>): Promise<T>
  close(): Promise<void>
  /** `host:port`, for messages. */
  readonly where: string
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/

function checkIdentifier(field: string, name: unknown, qualified: boolean): void {
  const parts = typeof name === 'string' ? (qualified ? name.split('.') : [name]) : []
  if (parts.length === 0 || parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) {
    throw new ConfigError(field, `must be ${qualified ? 'a table name (name or schema.name)' : 'a column name'} of letters, digits, _ and $ (starting with a letter or _), got ${JSON.stringify(name)}`)
  }
}

/** Checks the options (errors name the field) and reads the secrets. */
export function resolveOptions<In>(options: SqlSinkOptions<In>, dialect: string): ResolvedConnection {
  if (options === null || typeof options !== 'object') throw new ConfigError('options', `${dialect} sink options must be an object`)
  const c = options.connection
  if (c === null || typeof c !== 'object') throw new ConfigError('connection', 'must be an object with url, urlEnv, or host/port/user/database')
  checkIdentifier('table', options.table, true)
  checkIdentifier('progressTable', options.progressTable ?? 'weir_sink_progress', true)
  if (typeof options.columns !== 'function') throw new ConfigError('columns', 'must be a function from a record to its row (column name → value)')
  const mode = options.mode ?? 'insert'
  if (mode !== 'insert' && mode !== 'upsert') throw new ConfigError('mode', `must be 'insert' or 'upsert', got ${JSON.stringify(mode)}`)
  if (mode === 'upsert') {
    if (!Array.isArray(options.key) || options.key.length === 0) throw new ConfigError('key', "upsert mode needs the key columns (a primary key or unique index of the table), e.g. key: ['id']")
  }
  if (options.key !== undefined) {
    if (!Array.isArray(options.key)) throw new ConfigError('key', 'must be an array of column names')
    options.key.forEach((k, i) => checkIdentifier(`key[${i}]`, k, false))
  }
  const pool = options.pool ?? 2
  if (!Number.isSafeInteger(pool) || pool < 1 || pool > 100) throw new ConfigError('pool', `must be a whole number from 1 to 100, got ${String(options.pool)}`)
  const resolved: ResolvedConnection = { pool }
  const sources = [c.url !== undefined, c.urlEnv !== undefined, c.host !== undefined].filter(Boolean).length
  if (sources !== 1) throw new ConfigError('connection', 'give exactly one of url, urlEnv, or host (with port, user, database)')
  if (c.url !== undefined) {
    const url = parseUrl('connection.url', c.url)
    if (url.password !== '') throw new ConfigError('connection.url', 'must not hold a password (it would be in the pipeline\'s code): use connection.passwordEnv or connection.passwordFile, or connection.urlEnv for a URL kept in the environment')
    resolved.url = c.url
  }
  if (c.urlEnv !== undefined) {
    if (typeof c.urlEnv !== 'string' || c.urlEnv === '') throw new ConfigError('connection.urlEnv', 'must name an environment variable')
    const value = process.env[c.urlEnv]
    if (value === undefined || value === '') throw new ConfigError('connection.urlEnv', `environment variable ${c.urlEnv} is not set`)
    parseUrl('connection.urlEnv', value)
    resolved.url = value
  }
  if (c.host !== undefined) {
    if (typeof c.host !== 'string' || c.host === '') throw new ConfigError('connection.host', 'must be a host name or address')
    resolved.host = c.host
    if (c.user === undefined || typeof c.user !== 'string') throw new ConfigError('connection.user', 'is needed with connection.host')
    if (c.database === undefined || typeof c.database !== 'string') throw new ConfigError('connection.database', 'is needed with connection.host')
    resolved.user = c.user
    resolved.database = c.database
  }
  if (c.port !== undefined) {
    if (!Number.isSafeInteger(c.port) || c.port < 1 || c.port > 65535) throw new ConfigError('connection.port', `must be a port number, got ${String(c.port)}`)
    resolved.port = c.port
  }
  if (c.passwordEnv !== undefined && c.passwordFile !== undefined) throw new ConfigError('connection.passwordEnv', 'give passwordEnv or passwordFile, not both')
  if (c.passwordEnv !== undefined) {
    const value = typeof c.passwordEnv === 'string' && c.passwordEnv !== '' ? process.env[c.passwordEnv] : undefined
    if (value === undefined) throw new ConfigError('connection.passwordEnv', `environment variable ${String(c.passwordEnv)} is not set`)
    resolved.password = value
  }
  if (c.passwordFile !== undefined) resolved.password = readSecret('connection.passwordFile', c.passwordFile).replace(/\r?\n$/, '')
  if (options.tls !== undefined) {
    const t = options.tls
    if (t === null || typeof t !== 'object') throw new ConfigError('tls', 'must be an object (ca, cert, key: PEM files; rejectUnauthorized)')
    if (t.rejectUnauthorized !== undefined && typeof t.rejectUnauthorized !== 'boolean') throw new ConfigError('tls.rejectUnauthorized', 'must be true or false')
    if ((t.cert === undefined) !== (t.key === undefined)) throw new ConfigError(t.cert === undefined ? 'tls.cert' : 'tls.key', 'a client certificate needs both tls.cert and tls.key')
    resolved.tls = {
      rejectUnauthorized: t.rejectUnauthorized ?? true,
      ...(t.ca === undefined ? {} : { ca: readSecret('tls.ca', t.ca) }),
      ...(t.cert === undefined ? {} : { cert: readSecret('tls.cert', t.cert) }),
      ...(t.key === undefined ? {} : { key: readSecret('tls.key', t.key) }),
    }
  }
  return resolved
}

function parseUrl(field: string, value: unknown): URL {
  try {
    if (typeof value !== 'string') throw new Error('not a string')
    return new URL(value)
  } catch {
    throw new ConfigError(field, `must be a connection URL (e.g. postgres://user@host:5432/db), got ${field === 'connection.url' ? JSON.stringify(value) : 'something else'}`)
  }
}

function readSecret(field: string, path: unknown): string {
  if (typeof path !== 'string' || path === '') throw new ConfigError(field, 'must be a file path')
  if (!existsSync(path)) throw new ConfigError(field, `file ${path} does not exist`)
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(field, `file ${path} cannot be read: ${(err as Error).message}`)
  }
}

/** The progress columns as read back. */
interface ProgressRow {
  generation: unknown
  checkpoint: unknown
  epoch: unknown
  positions: unknown
  dead_letters: unknown
}

const json = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T))

function progressOf(row: ProgressRow): SinkProgress {
  return {
    generation: Number(row.generation),
    checkpoint: Number(row.checkpoint),
    epoch: Number(row.epoch),
    positions: json<Record<string, number>>(row.positions),
    deadLetters: json<PendingDeadLetter[]>(row.dead_letters),
  }
}

/**
 * An exactly-once sink into a SQL table (the PostgreSQL and MariaDB sinks are this with their
 * dialect). See the sinks' files for the guarantee.
 */
export abstract class SqlSink<In> extends StoreSink<In, SqlRow> {
  private readonly connection: ResolvedConnection
  private readonly mode: 'insert' | 'upsert'
  private readonly key: readonly string[]
  private readonly progressTable: string
  private readonly schema: readonly string[]
  private readonly columns: SqlSinkOptions<In>['columns']
  private pool: SqlPool | undefined
  private tableChecked = false

  protected constructor(private readonly dialect: SqlDialect, private readonly options: SqlSinkOptions<In>) {
    super(options)
    this.connection = resolveOptions(options, dialect.name)
    this.mode = options.mode ?? 'insert'
    this.key = options.key ?? []
    this.progressTable = options.progressTable ?? 'weir_sink_progress'
    if (options.schema !== undefined && (!Array.isArray(options.schema) || options.schema.some((x) => typeof x !== 'string' || x.trim() === ''))) throw new ConfigError('schema', 'must be a list of SQL statements (strings)')
    this.schema = options.schema ?? []
    this.columns = options.columns
  }

  private table(name: string): string {
    return name.split('.').map((p) => this.dialect.quote(p)).join('.')
  }

  protected describeStore(): string {
    return `${this.dialect.name} ${this.pool?.where ?? describeTarget(this.connection)} table ${this.options.table}`
  }

  protected async connect(ctx: LifecycleContext): Promise<void> {
    this.pool ??= this.dialect.openPool(this.connection, ctx.log)
    if (this.tableChecked) return
    await this.pool.transaction(async (c) => {
      for (const s of this.dialect.createProgressTable(this.table(this.progressTable))) await c.query(s)
    }).catch((err: unknown) => {
      // Two actors creating the table at once: one of them finds it made by the other.
      if (!this.dialect.isDataError(err) && !/already exists/i.test((err as Error)?.message ?? '')) throw err
    })
    // The pipeline's own statements run apart: an error there names them, not the progress table.
    for (const statement of this.schema) {
      await this.pool.transaction(async (c) => void (await c.query(statement))).catch((err: unknown) => {
        if (this.dialect.isUnavailable(err) || super.isUnavailable(err)) throw err
        if (/already exists/i.test((err as Error)?.message ?? '')) return
        throw new ConfigError('schema', `${statement.slice(0, 200)} failed: ${(err as Error)?.message ?? String(err)}`, { stage: ctx.stage, partition: ctx.partition })
      })
    }
    this.tableChecked = true
  }

  protected async disconnect(): Promise<void> {
    const pool = this.pool
    this.pool = undefined
    await pool?.close()
  }

  override isUnavailable(err: unknown): boolean {
    return super.isUnavailable(err) || this.dialect.isUnavailable(err)
  }

  protected toRow(record: StreamRecord<In>): SqlRow {
    const values = this.columns(record)
    if (values === null || typeof values !== 'object') throw new TypeError(`columns returned ${values === null ? 'null' : typeof values}, not a row object`)
    if (this.mode === 'upsert') {
      const key: Record<string, unknown> = {}
      for (const k of this.key) {
        if (!(k in values) || values[k] === undefined || values[k] === null) throw new TypeError(`the row has no value for key column ${k}`)
        key[k] = this.dialect.bindValue(values[k])
      }
      if (record.value === null || record.value === undefined) return { op: 'delete', key }
    }
    const bound: Record<string, unknown> = {}
    for (const [name, v] of Object.entries(values)) {
      if (!IDENTIFIER.test(name)) throw new TypeError(`column name ${JSON.stringify(name)} is not a plain identifier`)
      bound[name] = this.dialect.bindValue(v)
    }
    if (Object.keys(bound).length === 0) throw new TypeError('columns returned a row with no columns')
    return { op: 'write', values: bound }
  }

  protected override resetHint(actor: SinkActor): string {
    const q = this.dialect.quote
    return `DELETE FROM ${this.table(this.progressTable)} WHERE ${q('pipeline')} = ${sqlString(actor.pipeline)} AND ${q('stage')} = ${sqlString(actor.stage)} AND ${q('partition')} = ${actor.partition}`
  }

  /** The actor's progress row, its three parameters numbered from `first` (they must come last in a statement's parameters: MariaDB's are positional). */
  private where(first = 1): string {
    const q = this.dialect.quote
    const p = this.dialect.placeholder
    return `${q('pipeline')} = ${p(first)} AND ${q('stage')} = ${p(first + 1)} AND ${q('partition')} = ${p(first + 2)}`
  }

  protected async claim(actor: SinkActor): Promise<SinkClaim> {
    const table = this.table(this.progressTable)
    const id = [actor.pipeline, actor.stage, actor.partition]
    return this.pool!.transaction(async (c) => {
      await c.query(this.dialect.insertProgressIfMissing(table), id)
      const rows = await c.query(`SELECT generation, checkpoint, epoch, positions, dead_letters FROM ${table} WHERE ${this.where()} FOR UPDATE`, id)
      const found = progressOf(rows[0] as unknown as ProgressRow)
      const generation = found.generation + 1
      await c.query(`UPDATE ${table} SET generation = ${this.dialect.placeholder(1)}, updated_at = CURRENT_TIMESTAMP WHERE ${this.where(2)}`, [generation, ...id])
      const none = found.checkpoint === 0 && Object.keys(found.positions).length === 0 && found.deadLetters.length === 0
      return { generation, progress: none ? undefined : found }
    })
  }

  /**
   * One transaction of four round trips in the common case: BEGIN, the rows (a statement per
   * group of rows), the progress update (conditional on this generation and `batch.from`:
   * the row lock it takes orders it after any claim or zombie write), COMMIT. A statement the
   * database refuses for its data aborts it, and the write is done again with a savepoint per
   * statement, halving refused ones until only the bad rows are left out. A progress row
   * elsewhere aborts it too; reading it then says why (fenced, written already, moved).
   */
  protected async write(batch: SinkBatch<SqlRow>): Promise<WriteResult> {
    try {
      return await this.pool!.transaction((c) => this.apply(c, batch, false))
    } catch (err) {
      if (err instanceof RowsRefused) {
        try {
          return await this.pool!.transaction((c) => this.apply(c, batch, true))
        } catch (again) {
          if (again instanceof ProgressMoved) return this.progressMoved(batch)
          throw again
        }
      }
      if (err instanceof ProgressMoved) return this.progressMoved(batch)
      throw err
    }
  }

  private async apply(c: SqlConnection, batch: SinkBatch<SqlRow>, careful: boolean): Promise<WriteResult> {
    const a = batch.actor
    const rejected = await this.writeRows(c, batch.rows.map((r) => r.row), careful)
    const p = batch.progress(rejected)
    const ph = this.dialect.placeholder
    const changed = await c.execute(
      `UPDATE ${this.table(this.progressTable)} SET generation = ${ph(1)}, checkpoint = ${ph(2)}, epoch = ${ph(3)}, positions = ${ph(4)}, dead_letters = ${ph(5)}, updated_at = CURRENT_TIMESTAMP WHERE ${this.where(6)} AND generation = ${ph(9)} AND positions = ${ph(10)}`,
      [p.generation, p.checkpoint, p.epoch, encodePositions(p.positions), JSON.stringify(p.deadLetters), a.pipeline, a.stage, a.partition, batch.generation, encodePositions(batch.from)],
    )
    if (changed !== 1) throw new ProgressMoved()
    return { outcome: 'written', rejected }
  }

  /** The progress row was not where the write expected it: says why, from what it holds now. */
  private async progressMoved(batch: SinkBatch<SqlRow>): Promise<WriteResult> {
    const a = batch.actor
    const rows = await this.pool!.transaction((c) => c.query(`SELECT generation, checkpoint, epoch, positions, dead_letters FROM ${this.table(this.progressTable)} WHERE ${this.where()}`, [a.pipeline, a.stage, a.partition]))
    if (rows.length === 0) throw new SinkError(`${this.describeStore()}: the progress row of ${a.pipeline} ${a.stage}/${a.partition} in ${this.progressTable} is gone (deleted while the sink ran)`, { stage: a.stage, partition: a.partition, pipeline: a.pipeline })
    const stored = progressOf(rows[0] as unknown as ProgressRow)
    if (stored.generation !== batch.generation) {
      throw new SinkFencedError(`${this.describeStore()}: ${a.stage}/${a.partition} of generation ${batch.generation} refused: the progress row has generation ${stored.generation} (a newer instance claimed the actor)`, { stage: a.stage, partition: a.partition, pipeline: a.pipeline, generation: batch.generation, storeGeneration: stored.generation })
    }
    const positions = encodePositions(stored.positions)
    if (positions === encodePositions(batch.to)) return { outcome: 'already-written', progress: stored }
    throw new StateCorruptedError(`${this.describeStore()}: the progress of ${a.stage}/${a.partition} is at ${positions}, but this write goes from ${encodePositions(batch.from)} to ${encodePositions(batch.to)}`, { stage: a.stage, partition: a.partition, pipeline: a.pipeline })
  }

  /**
   * Writes the rows (indexes into the batch) in statements of many rows; returns the rows the
   * database refused. In upsert mode only the last row per key is applied (a statement may
   * not touch a row twice, and the last one is what the key holds after the batch anyway).
   */
  private async writeRows(c: SqlConnection, rows: readonly SqlRow[], careful: boolean): Promise<RejectedRow[]> {
    let order = rows.map((_, i) => i)
    if (this.mode === 'upsert') {
      const last = new Map<string, number>()
      rows.forEach((r, i) => last.set(JSON.stringify(this.key.map((k) => String((r.op === 'write' ? r.values : r.key)[k]))), i))
      order = [...last.values()].sort((x, y) => x - y)
    }
    // Statements of consecutive rows of the same shape (the same columns, or deletes).
    const groups: number[][] = []
    let shape = ''
    for (const i of order) {
      const r = rows[i]!
      const s = r.op === 'delete' ? '\u0000delete' : Object.keys(r.values).join('\u0000')
      const width = r.op === 'delete' ? this.key.length : Object.keys(r.values).length
      const g = groups.at(-1)
      if (g === undefined || s !== shape || (g.length + 1) * width > this.dialect.maxParams) groups.push([i])
      else g.push(i)
      shape = s
    }
    const rejected: RejectedRow[] = []
    let savepoint = 0
    const attempt = async (indexes: number[]): Promise<void> => {
      const name = `weir_rows_${++savepoint}`
      await c.query(`SAVEPOINT ${name}`)
      try {
        await this.statement(c, indexes.map((i) => rows[i]!))
        await c.query(`RELEASE SAVEPOINT ${name}`)
      } catch (err) {
        if (!this.dialect.isDataError(err)) throw err
        await c.query(`ROLLBACK TO SAVEPOINT ${name}`)
        if (indexes.length === 1) {
          rejected.push({ index: indexes[0]!, error: err, detail: this.dialect.errorDetail(err) })
          return
        }
        // Halves until only the refused rows are left out.
        const half = Math.ceil(indexes.length / 2)
        await attempt(indexes.slice(0, half))
        await attempt(indexes.slice(half))
      }
    }
    if (!careful) {
      // No savepoints: a refused statement aborts the transaction, and the write runs again carefully.
      for (const g of groups) {
        try {
          await this.statement(c, g.map((i) => rows[i]!))
        } catch (err) {
          if (this.dialect.isDataError(err)) throw new RowsRefused()
          throw err
        }
      }
      return []
    }
    for (const g of groups) await attempt(g)
    return rejected.sort((x, y) => x.index - y.index)
  }

  private async statement(c: SqlConnection, rows: readonly SqlRow[]): Promise<void> {
    const table = this.table(this.options.table)
    const q = this.dialect.quote
    const ph = this.dialect.placeholder
    const first = rows[0]!
    const params: unknown[] = []
    if (first.op === 'delete') {
      const tuples = rows.map((r) => `(${this.key.map((k) => (params.push((r as { key: Record<string, unknown> }).key[k]), ph(params.length))).join(', ')})`)
      await c.query(`DELETE FROM ${table} WHERE (${this.key.map(q).join(', ')}) IN (${tuples.join(', ')})`, params)
      return
    }
    const columns = Object.keys(first.values)
    for (const r of rows) for (const col of columns) params.push((r as { values: Record<string, unknown> }).values[col])
    if (this.mode === 'upsert') {
      await c.query(this.dialect.upsert(table, columns, this.key, rows.length), params)
      return
    }
    let n = 0
    const tuples = rows.map(() => `(${columns.map(() => ph(++n)).join(', ')})`)
    await c.query(`INSERT INTO ${table} (${columns.map(q).join(', ')}) VALUES ${tuples.join(', ')}`, params)
  }
}

function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`
}

function describeTarget(c: ResolvedConnection): string {
  if (c.url !== undefined) {
    try {
      const u = new URL(c.url)
      return `${u.hostname}:${u.port}`
    } catch {
      return '?'
    }
  }
  return `${c.host ?? '?'}:${c.port ?? ''}`
}
