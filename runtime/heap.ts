/**
 * V8 settings for a streaming process. A stream processor allocates many short-lived
 * objects per record (decoded values, Kafka messages, encoder buffers); with V8's default
 * 16 MiB semi-spaces the young generation fills every few milliseconds and survivors get
 * copied over and over. 64 MiB semi-spaces cut CPU by ~10% on the Kafka word count
 * (benchmarks/HISTORY.md, bench:kafka at 57e597a) for ~100 MiB more RSS. Applied by `weir run` before anything else
 * is loaded; a `--max-semi-space-size` given by the user (NODE_OPTIONS, node flags) wins.
 *
 * @example
 * tuneHeap() // first thing in a process that runs pipelines
 */
import { setFlagsFromString } from 'node:v8'

export const SEMI_SPACE_MB = 64

export function tuneHeap(): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('--max-semi-space-size'))
  if (!given) setFlagsFromString(`--max-semi-space-size=${SEMI_SPACE_MB}`)
}
