/**
 * An exactly-once sink for another store in one page: SQLite (Node's built-in `node:sqlite`),
 * on weir's public `StoreSink`. docs/sinks.md walks through it. Each write puts its rows and the
 * actor's progress into SQLite in one transaction; a restart claims the progress (a new
 * generation, so an older instance's writes are refused) and passes over what SQLite holds.
 * Every record is in the table once, appends included. A row SQLite refuses (a CHECK or NOT
 * NULL constraint) goes to the stage's dead-letter topic with SQLite's error.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite'
import { resolve } from 'node:path'
import {
  ConfigError, SinkFencedError, StateCorruptedError, StoreSink, encodePositions,
  type LifecycleContext, type RejectedRow, type SinkActor, type SinkBatch, type SinkClaim, type SinkProgress, type StreamRecord, type WriteResult,
} from '../../index.ts'

export interface SqliteSinkOptions<T> {
  /** The database file; relative to the run's working directory. */
  path: string
  /** The table rows are inserted into (it must exist: the pipeline's own schema). */
  table: string
  /** The row for a record: column → value. A throw dead-letters the record. */
  row: (record: StreamRecord<T>) => Record<string, SQLInputValue>
  batchRows?: number
}

type Row = Record<string, SQLInputValue>

export class SqliteSink<T> extends StoreSink<T, Row> {
  private db!: DatabaseSync
  private readonly inserts = new Map<string, StatementSync>()

  constructor(private readonly options: SqliteSinkOptions<T>) {
    super({ batchRows: options.batchRows })
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(options.table)) throw new ConfigError('table', `'${options.table}' is not a plain SQL name`)
  }

  protected describeStore(): string {
    return `SQLite ${this.options.path} table ${this.options.table}`
  }

  protected async connect(ctx: LifecycleContext): Promise<void> {
    this.db = new DatabaseSync(resolve(ctx.workDir, this.options.path), { timeout: 10_000 })
    this.db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
      CREATE TABLE IF NOT EXISTS weir_sink_progress (pipeline TEXT, stage TEXT, partition INTEGER, generation INTEGER,
        checkpoint INTEGER, epoch INTEGER, positions TEXT, dead_letters TEXT, PRIMARY KEY (pipeline, stage, partition))`)
  }

  protected async claim(actor: SinkActor): Promise<SinkClaim> {
    return this.transaction(() => {
      const before = this.progressOf(actor)
      const generation = (before?.generation ?? 0) + 1
      this.db.prepare(`INSERT INTO weir_sink_progress VALUES (?, ?, ?, ?, 0, 0, '{}', '[]')
        ON CONFLICT DO UPDATE SET generation = excluded.generation`).run(actor.pipeline, actor.stage, actor.partition, generation)
      return { generation, progress: before && before.checkpoint > 0 ? before : undefined }
    })
  }

  protected async write(batch: SinkBatch<Row>): Promise<WriteResult> {
    return this.transaction(() => {
      const stored = this.progressOf(batch.actor)!
      if (stored.generation !== batch.generation) throw new SinkFencedError(`${this.describeStore()}: generation ${stored.generation} claimed ${batch.actor.stage}/${batch.actor.partition}; this instance has ${batch.generation}`, { stage: batch.actor.stage, partition: batch.actor.partition })
      const at = encodePositions(stored.positions)
      if (at === encodePositions(batch.to) && stored.checkpoint > 0) return { outcome: 'already-written', progress: stored }
      if (at !== encodePositions(batch.from)) throw new StateCorruptedError(`${this.describeStore()}: progress is at ${at}, this write follows ${encodePositions(batch.from)}`, { stage: batch.actor.stage, partition: batch.actor.partition })
      const rejected: RejectedRow[] = []
      batch.rows.forEach(({ row }, index) => {
        // One savepoint per row: a refused row is undone alone (a real sink would batch and bisect).
        this.db.exec('SAVEPOINT row')
        try {
          this.insertFor(Object.keys(row)).run(...Object.values(row))
          this.db.exec('RELEASE row')
        } catch (err) {
          this.db.exec('ROLLBACK TO row; RELEASE row')
          if ((err as { code?: string }).code !== 'ERR_SQLITE_ERROR' || !/constraint/i.test((err as Error).message)) throw err
          rejected.push({ index, error: err, detail: { errstr: (err as { errstr?: string }).errstr } })
        }
      })
      const p = batch.progress(rejected)
      this.db.prepare('UPDATE weir_sink_progress SET checkpoint = ?, epoch = ?, positions = ?, dead_letters = ? WHERE pipeline = ? AND stage = ? AND partition = ?')
        .run(p.checkpoint, p.epoch, encodePositions(p.positions), JSON.stringify(p.deadLetters), batch.actor.pipeline, batch.actor.stage, batch.actor.partition)
      return { outcome: 'written', rejected }
    })
  }

  protected toRow(record: StreamRecord<T>): Row {
    return this.options.row(record)
  }

  protected async disconnect(): Promise<void> {
    if (this.db?.isOpen) this.db.close()
  }

  protected override resetHint(actor: SinkActor): string {
    return `DELETE FROM weir_sink_progress WHERE pipeline = '${actor.pipeline}' AND stage = '${actor.stage}' AND partition = ${actor.partition}`
  }

  private progressOf(actor: SinkActor): SinkProgress | undefined {
    const r = this.db.prepare('SELECT * FROM weir_sink_progress WHERE pipeline = ? AND stage = ? AND partition = ?').get(actor.pipeline, actor.stage, actor.partition) as Record<string, number | string> | undefined
    if (r === undefined) return undefined
    return { generation: Number(r.generation), checkpoint: Number(r.checkpoint), epoch: Number(r.epoch), positions: JSON.parse(String(r.positions)), deadLetters: JSON.parse(String(r.dead_letters)) }
  }

  private insertFor(columns: string[]): StatementSync {
    const key = columns.join(',')
    let s = this.inserts.get(key)
    if (s === undefined) {
      s = this.db.prepare(`INSERT INTO ${this.options.table} (${key}) VALUES (${columns.map(() => '?').join(', ')})`)
      this.inserts.set(key, s)
    }
    return s
  }

  /** BEGIN IMMEDIATE takes the write lock first, so a zombie and its successor never interleave. */
  private transaction<R>(body: () => R): R {
    this.db.exec('BEGIN IMMEDIATE')
    try {
      const r = body()
      this.db.exec('COMMIT')
      return r
    } catch (err) {
      this.db.exec('ROLLBACK')
      throw err
    }
  }
}
