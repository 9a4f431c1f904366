/**
 * Built-in processors, written with the public API only (the same one users have).
 *
 * @example
 * import { GeneratorSource, JsonlFileSink } from 'weir/processors'
 */
export { GeneratorSource } from './sources/generator-source.ts'
export type { GeneratorOptions, Generated } from './sources/generator-source.ts'
export { HttpIngestSource } from './sources/http-ingest-source.ts'
export type { HttpIngestSourceOptions, AckBody } from './sources/http-ingest-source.ts'
export type { SecretSource } from './secrets.ts'
export { JsonlFileSink } from './sinks/jsonl-file-sink.ts'
export type { JsonlFileSinkOptions, StagedLines } from './sinks/jsonl-file-sink.ts'
export { RedisSink } from './sinks/redis-sink.ts'
export type { RedisSinkOptions, RedisCommand, RedisValue, RedisTlsOptions } from './sinks/redis-sink.ts'
export { HttpSink, HttpRequestRefusedError } from './sinks/http-sink.ts'
export type { HttpSinkOptions, StagedRequest, StagedRequests } from './sinks/http-sink.ts'
export { KafkaSink } from './sinks/kafka-sink.ts'
export type { KafkaSinkOptions, KafkaSinkMessage, KafkaSinkSasl, KafkaSinkTls } from './sinks/kafka-sink.ts'
export { WindowAggregate, tumbling, sliding, session } from './windows/index.ts'
export type { Window, WindowAssigner, WindowAggregation, WindowAggregateOptions } from './windows/index.ts'
export { PostgresSink, postgresDialect } from './sinks/postgres-sink.ts'
export type { PostgresSinkOptions } from './sinks/postgres-sink.ts'
export { MariaDbSink, mariadbDialect } from './sinks/mariadb-sink.ts'
export type { MariaDbSinkOptions } from './sinks/mariadb-sink.ts'
export type { SqlSinkOptions, SqlConnectionOptions, SqlTlsOptions, SqlValue, SqlRow, SqlDialect } from './sinks/sql/sql-sink.ts'
