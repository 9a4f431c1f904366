/**
 * V8 settings for a process that runs pipelines on Kafka. kafkajs and the Kafka pipe allocate
 * many short-lived objects per record (messages, request and response buffers); 64 MiB
 * young-generation semi-spaces instead of V8's 16 let more of them die young. On the embedded
 * pipe they only cost memory: at `4b98ba0`, `bench:embedded` at 100k keys did 923,427 and
 * 972,811 records/s with them (peak RSS 688 and 622 MiB) against 994,175 and 1,006,996
 * without (420 and 531 MiB), and at 10M keys the same speed for 140 MiB more. The Kafka word
 * count (`bench:kafka --only weir --lines 400k`) did 39,378 and 39,579 lines/s with them
 * against 36,182 and 38,821 without. So `weir run --pipe kafka://…` and `weir worker` apply
 * them before opening the pipe, and `weir run` on the embedded pipe keeps V8's default. A
 * `--max-semi-space-size` given by the user (NODE_OPTIONS, node flags) wins.
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
