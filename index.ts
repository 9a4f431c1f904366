/**
 * weir: a stateful stream-processing runtime for TypeScript.
 *
 * @example
 * import { Pipeline, Processor, Source } from 'weir'
 */
export { Processor, Source, ValueState, MapState, ListState, ActorValueState } from './runtime/processor.ts'
export type { StreamRecord, Context, SourceContext, LifecycleContext, Timer, TimerService, EmitOptions, SourceStatus } from './runtime/processor.ts'
export { Pipeline, Stream, policy } from './runtime/pipeline.ts'
export type { StageOptions, FailurePolicy, StageSpec } from './runtime/pipeline.ts'
export { startEmbedded } from './runtime/embedded-runner.ts'
export type { RunOptions, RunResult, RunningPipeline } from './runtime/embedded-runner.ts'
export type { Codec, CodecName } from './runtime/codec.ts'
export { WeirError, ConfigError, ActorFencedError, DecodeError, ProcessingError, TopologyMismatchError, StateCorruptedError } from './runtime/errors.ts'
