/**
 * Built-in processors, written with the public API only (the same one users have).
 *
 * @example
 * import { GeneratorSource, JsonlFileSink } from 'weir/processors'
 */
export { GeneratorSource } from './sources/generator-source.ts'
export type { GeneratorOptions, Generated } from './sources/generator-source.ts'
export { JsonlFileSink } from './sinks/jsonl-file-sink.ts'
export type { JsonlFileSinkOptions, StagedLines } from './sinks/jsonl-file-sink.ts'
export { RedisSink } from './sinks/redis-sink.ts'
export type { RedisSinkOptions, RedisCommand, RedisValue, RedisTlsOptions } from './sinks/redis-sink.ts'
export { HttpSink, HttpRequestRefusedError } from './sinks/http-sink.ts'
export type { HttpSinkOptions, SecretSource, StagedRequest, StagedRequests } from './sinks/http-sink.ts'
export { KafkaSink } from './sinks/kafka-sink.ts'
export type { KafkaSinkOptions, KafkaSinkMessage, KafkaSinkSasl, KafkaSinkTls } from './sinks/kafka-sink.ts'
export { WindowAggregate, tumbling, sliding, session } from './windows/index.ts'
export type { Window, WindowAssigner, WindowAggregation, WindowAggregateOptions } from './windows/index.ts'
export { PostgresSink, postgresDialect } from './sinks/postgres-sink.ts'
export type { PostgresSinkOptions } from './sinks/postgres-sink.ts'
export { MariaDbSink, mariadbDialect } from './sinks/mariadb-sink.ts'
export type { MariaDbSinkOptions } from './sinks/mariadb-sink.ts'
export type { SqlSinkOptions, SqlConnectionOptions, SqlTlsOptions, SqlValue, SqlRow, SqlDialect } from './sinks/sql/sql-sink.ts'
export { FileSetSource, EVENT_ID_HEADER } from './sources/file-set-source.ts'
export type { FileSetSourceOptions, FileSetS3Options, FileSetRecordMeta } from './sources/file-set-source.ts'
export { FileSetObjectChangedError, FileSetObjectVanishedError, FileSetJobUnfinishedError } from './sources/file-set/errors.ts'
export type { JobState as FileSetJobState, JobSummary as FileSetJobSummary, JobStatus as FileSetJobStatus, PinnedObject as FileSetPinnedObject } from './sources/file-set/job-state.ts'
