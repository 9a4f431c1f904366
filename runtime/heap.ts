/**
 * V8 and malloc settings for a process that runs pipelines (`weir run`, `weir worker`).
 * Node flags and an environment the user gave (node's command line, NODE_OPTIONS,
 * MALLOC_ARENA_MAX) win.
 *
 * - glibc malloc arenas (`startEnv`): glibc gives each thread that allocates an arena of
 *   its own, and RocksDB's work on Node's thread pool leaves freed blocks spread over them.
 *   Two arenas took 100–150 MiB off a 10M-key run (HISTORY.md, "Memory at 10M keys"); on
 *   the embedded pipe one arena, with the log's block cache gone (embedded-pipe.ts), took
 *   about 80 MiB more at 10M keys for about 5 % of the records/s at 100k keys (HISTORY.md,
 *   "The young generation"). glibc reads MALLOC_ARENA_MAX only as a process
 *   starts, like the semi-space size below.
 *
 * - Young generation (`startFlags`): V8 reads `--max-semi-space-size` only as the process
 *   starts (set later, it changes nothing), so bin/weir.js puts it on its own command line
 *   when it replaces itself, and the benchmarks on their children's. Node 24 sizes the
 *   semi-spaces from the heap limit: 64 MiB each (128 MiB committed) at the 4 GiB limit of a
 *   machine with 16 GiB or more. On the embedded pipe 16 MiB took 85 MiB off the peak RSS at
 *   10M keys at the same speed, and cost 5–10 % of the records/s at 100k keys with 1.6×
 *   growth, none with 1.3×, and about 6 % (q4) and up to 10 % (q8) of weir's CPU on Nexmark;
 *   32 MiB took the 10M-key peak back over 512 MiB (benchmarks/HISTORY.md, "The young
 *   generation" and "Nexmark with the embedded pipe's start settings"). On Kafka,
 *   kafkajs and the Kafka pipe allocate many short-lived objects per record, and 64 MiB
 *   semi-spaces let more of them die young (HISTORY.md, "Memory at 10M keys").
 * - Old-generation growth (`tuneHeap`, at run time), on the embedded pipe: after each full
 *   collection V8 lets the old generation grow to a multiple of what survived, up to 4× on a
 *   machine with several GiB, so `weir run` with a live heap of 70–120 MiB committed
 *   450–520 MiB between collections at 10M keys. Most of it is garbage of the state write
 *   cache (entries loaded, then evicted) and of the checkpoint's store writes, which outlive
 *   young-generation collections by design. A fixed 1.3× keeps the committed heap near
 *   200 MiB at 10M keys, for about 5 % of the records per CPU-second at 1M keys and none
 *   measurable at 100k or 10M (HISTORY.md, "The young generation"). On Kafka the A/B was too noisy to tell a cost, so Kafka
 *   processes keep V8's own growth.
 *
 * @example
 * // as the process starts (bin/weir.js does this for itself):
 * spawn(process.execPath, [...startFlags('embedded', process.execArgv), 'app.js'], { env: { ...process.env, ...startEnv('embedded', process.env) } })
 * // before the pipeline starts:
 * tuneHeap('embedded')
 */
import { setFlagsFromString } from 'node:v8'

/** Per pipe; bin/weir.js holds the same figures (test/bin/weir.test.ts checks them). */
export const START_SETTINGS = { embedded: { semiSpaceMb: 16, mallocArenas: 1 }, kafka: { semiSpaceMb: 64, mallocArenas: 2 } } as const
export const HEAP_GROWTH_PERCENT = 30

/** V8 takes either spelling of a flag (--max_old_space_size). */
function hasFlag(given: readonly string[], flag: string): boolean {
  return given.some((a) => a.replaceAll('_', '-').includes(flag))
}

/** Flags V8 reads only as a process starts, for a process that will run on `pipe`, given the node flags in effect. */
export function startFlags(pipe: 'kafka' | 'embedded', given: readonly string[]): string[] {
  return hasFlag(given, '--max-semi-space-size') ? [] : [`--max-semi-space-size=${START_SETTINGS[pipe].semiSpaceMb}`]
}

/** The environment glibc reads only as a process starts, for a process that will run on `pipe`; a value in `env` is kept. */
export function startEnv(pipe: 'kafka' | 'embedded', env: NodeJS.ProcessEnv): { MALLOC_ARENA_MAX: string } {
  return { MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX ?? String(START_SETTINGS[pipe].mallocArenas) }
}

/** The flags tuneHeap sets for `pipe`, given the node flags already in effect (`given`). */
export function heapFlags(pipe: 'kafka' | 'embedded', given: readonly string[]): string[] {
  // A user's max-old-space-size sets V8's own growth bound (1.3× to 2× below 2 GiB): kept as it is.
  if (pipe === 'embedded' && !hasFlag(given, '--heap-growing-percent') && !hasFlag(given, '--max-old-space-size')) return [`--heap-growing-percent=${HEAP_GROWTH_PERCENT}`]
  return []
}

export function tuneHeap(pipe: 'kafka' | 'embedded'): void {
  for (const flag of heapFlags(pipe, [...process.execArgv, process.env.NODE_OPTIONS ?? ''])) setFlagsFromString(flag)
}
