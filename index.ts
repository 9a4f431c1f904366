/**
 * weir: a stateful stream-processing runtime for TypeScript.
 *
 * @example
 * import { Pipeline, Processor, Source } from 'weir'
 */
export { Processor, Source } from './runtime/api/processor.ts'
export { ValueState, MapState, ListState, ActorValueState, type StateOptions } from './runtime/api/state.ts'
export type { StreamRecord, Context, SourceContext, LifecycleContext, CheckpointContext, CommitContext, Timer, TimerService, EmitOptions, SourceStatus, ActorReports, DeadLetterRecord } from './runtime/api/processor.ts'
export { StoreSink, encodePositions } from './runtime/api/sink.ts'
export type { SinkActor, SinkBatch, SinkClaim, SinkProgress, SinkRow, RejectedRow, WriteResult, InputPositions, PendingDeadLetter, StoreSinkOptions } from './runtime/api/sink.ts'
export { Pipeline, Stream, ConnectedStreams, policy } from './runtime/api/pipeline.ts'
export type { StageOptions, FailurePolicy, StageSpec, ProcessorFactory, SourceFactory, KeyOf, TopicInputOptions, WatermarkOptions, PipelineOptions } from './runtime/api/pipeline.ts'
export { startEmbedded } from './runner/embedded-runner.ts'
export type { RunOptions, RunResult, RunningPipeline } from './runner/embedded-runner.ts'
/**
 * What `RunOptions` and `RunningPipeline` name, so a run on Kafka and NATS can be set up from
 * code as `weir run --pipe kafka://… --bus nats://…` does.
 *
 * @example
 * import { openBus, openPipe, startEmbedded } from 'weir'
 * const pipe = await openPipe('kafka://127.0.0.1:9092', { dataDir: './.weir/wordcount' })
 * const bus = await openBus('nats://127.0.0.1:4222', { name: 'wordcount' })
 * const run = await startEmbedded(pipeline, { dataDir: './.weir/wordcount', pipe, bus, cluster: 'prod' })
 * await run.done
 * await pipe.close(); await bus.close()
 */
export { openPipe, checkPipeUrl } from './runtime/open-pipe.ts'
export type { OpenPipeOptions } from './runtime/open-pipe.ts'
export type { Pipe } from './runtime/pipe/pipe.ts'
export type { EmbeddedPipeOptions } from './runtime/pipe/embedded/embedded-pipe.ts'
export { openBus, localBus, resolveBusTarget, checkBusUrl, BusAuthError, BusUnavailableError } from './runtime/open-bus.ts'
export type { BusTarget, BusSources, BusSecurityOptions, NatsCredentials, NatsTls } from './runtime/open-bus.ts'
export type { ControlBus } from './runtime/control/bus.ts'
export type { ActorConfig, ActorStats } from './runtime/actor/actor.ts'
/** Crash injection for tests (weir/testing makes them; RunOptions.faults takes one). */
export type { Faults } from './runtime/faults.ts'
export type { Logger } from 'pino'
export type { Registry as MetricsRegistry } from 'prom-client'
export type { Codec, CodecName } from './runtime/codec.ts'
/**
 * Kafka's default partitioner: the partition a key's records go to (what `keyBy` and a Java
 * producer do), for clients that route by key themselves.
 *
 * @example
 * partitionForKey(Buffer.from('user-42'), 4) // 0..3
 */
export { partitionForKey } from './runtime/partitioner.ts'
/**
 * The rules of weir's HTTP endpoints, for sources and sinks that serve HTTP: an address other
 * machines reach needs a token; tokens compare in constant time.
 *
 * @example
 * checkPublicBinding(host, token, 'host', 'the tokenFile option')
 * if (token !== undefined && !requestHasToken(req.headers, token)) return reply.code(401).send()
 */
export { checkPublicBinding, isLoopback, requestHasToken } from './runtime/http-token.ts'
export { WeirError, ConfigError, ActorFencedError, DecodeError, ProcessingError, TopologyMismatchError, StateCorruptedError, PublishError, SinkError, SinkFencedError } from './runtime/errors.ts'
