/**
 * Preloaded (`--import`) into a process the ingest benchmark measures with --loop-delay: samples
 * the event loop's delay (node:perf_hooks, 10 ms resolution) and, at exit, writes its
 * percentiles and the count of stalls over 100 ms to stderr as one `loop-delay` JSON line.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'

const h = monitorEventLoopDelay({ resolution: 10 })
h.enable()
let stalls = 0
let last = performance.now()
const tick = setInterval(() => {
  const now = performance.now()
  if (now - last > 110) stalls++
  last = now
}, 10)
tick.unref()
process.on('exit', () => {
  h.disable()
  const ms = (ns: number): number => Math.round(ns / 1e4) / 100
  process.stderr.write(JSON.stringify({ 'loop-delay': { p50_ms: ms(h.percentile(50)), p99_ms: ms(h.percentile(99)), max_ms: ms(h.max), stalls_over_100ms: stalls } }) + '\n')
})
