/**
 * V8 settings for a process that runs pipelines (`weir run`, `weir worker`), applied before
 * the pipe opens. Node flags the user gave (node's command line or NODE_OPTIONS) win.
 *
 * - Old-generation growth, on the embedded pipe: after each full collection V8 lets the old
 *   generation grow to a multiple of what survived, up to 4× on a machine with several GiB,
 *   so `weir run` with a live heap of 70–120 MiB committed 450–520 MiB between collections
 *   at 10M keys. Most of it is garbage of the state write cache (entries loaded, then
 *   evicted) and of the checkpoint's store writes, which outlive young-generation
 *   collections by design. A fixed 1.6× keeps the peak near 330 MiB for about a tenth of the
 *   speed at 100k keys (benchmarks/HISTORY.md, "The old generation's growth"). On Kafka the
 *   A/B of the same session was too noisy to tell a cost, so Kafka processes keep V8's own.
 * - Young generation, on Kafka: kafkajs and the Kafka pipe allocate many short-lived objects
 *   per record (messages, request and response buffers), and 64 MiB semi-spaces instead of
 *   V8's 16 let more of them die young. On the embedded pipe they cost memory and gained no
 *   speed (benchmarks/HISTORY.md, "Memory at 10M keys").
 *
 * @example
 * tuneHeap('embedded') // weir run on the embedded pipe, before the pipeline starts
 */
import { setFlagsFromString } from 'node:v8'

export const SEMI_SPACE_MB = 64
export const HEAP_GROWTH_PERCENT = 60

/** The flags tuneHeap sets for `pipe`, given the node flags already in effect (`given`). */
export function heapFlags(pipe: 'kafka' | 'embedded', given: readonly string[]): string[] {
  // V8 takes either spelling of a flag (--max_old_space_size).
  const has = (flag: string): boolean => given.some((a) => a.replaceAll('_', '-').includes(flag))
  const flags: string[] = []
  // A user's max-old-space-size sets V8's own growth bound (1.3× to 2× below 2 GiB): kept as it is.
  if (pipe === 'embedded' && !has('--heap-growing-percent') && !has('--max-old-space-size')) flags.push(`--heap-growing-percent=${HEAP_GROWTH_PERCENT}`)
  if (pipe === 'kafka' && !has('--max-semi-space-size')) flags.push(`--max-semi-space-size=${SEMI_SPACE_MB}`)
  return flags
}

export function tuneHeap(pipe: 'kafka' | 'embedded'): void {
  for (const flag of heapFlags(pipe, [...process.execArgv, process.env.NODE_OPTIONS ?? ''])) setFlagsFromString(flag)
}
