/**
 * weir: a stateful stream-processing runtime for TypeScript.
 *
 * @example
 * import { Pipeline, Processor, Source } from 'weir'
 */
export { Processor, Source } from './runtime/api/processor.ts'
export { ValueState, MapState, ListState, ActorValueState } from './runtime/api/state.ts'
export type { StreamRecord, Context, SourceContext, LifecycleContext, CheckpointContext, CommitContext, Timer, TimerService, EmitOptions, SourceStatus } from './runtime/api/processor.ts'
export { Pipeline, Stream, policy } from './runtime/api/pipeline.ts'
export type { StageOptions, FailurePolicy, StageSpec } from './runtime/api/pipeline.ts'
export { startEmbedded } from './runner/embedded-runner.ts'
export type { RunOptions, RunResult, RunningPipeline } from './runner/embedded-runner.ts'
export type { Codec, CodecName } from './runtime/codec.ts'
export { WeirError, ConfigError, ActorFencedError, DecodeError, ProcessingError, TopologyMismatchError, StateCorruptedError, PublishError } from './runtime/errors.ts'
