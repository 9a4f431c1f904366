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
