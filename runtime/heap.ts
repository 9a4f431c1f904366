/**
 * V8 settings for a process that runs pipelines on Kafka. kafkajs and the Kafka pipe allocate
 * many short-lived objects per record (messages, request and response buffers), and 64 MiB
 * young-generation semi-spaces instead of V8's 16 let more of them die young. On the embedded
 * pipe they cost memory and no speed was gained (benchmarks/HISTORY.md, "Memory at 10M keys"),
 * so `weir run --pipe kafka://…` and `weir worker` apply them before opening the pipe and
 * `weir run` on the embedded pipe keeps V8's default. A `--max-semi-space-size` given by the
 * user (NODE_OPTIONS, node flags) wins.
 *
 * @example
 * tuneHeap() // before a process opens a Kafka pipe
 */
import { setFlagsFromString } from 'node:v8'

export const SEMI_SPACE_MB = 64

export function tuneHeap(): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('--max-semi-space-size'))
  if (!given) setFlagsFromString(`--max-semi-space-size=${SEMI_SPACE_MB}`)
}
