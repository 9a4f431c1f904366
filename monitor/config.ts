/**
 * The monitor's configuration at the edge: SLOs, durations and bind addresses, parsed and
 * refused here (ConfigError naming the field) so nothing downstream sees unchecked input.
 *
 * @example
 * parseDuration('2s', '--slo')                       // 2000
 * parseSloFlag('wordcount/count=500ms', '--slo')     // { pipeline: 'wordcount', output: 'count', timelinessMs: 500 }
 * parseMonitorConfig(JSON.parse(text), 'monitor.json')
 */
import { z } from 'zod'
import { ConfigError } from '../runtime/errors.ts'
import { checkPublicBinding } from '../runtime/http-token.ts'

/** The port `weir monitor` and `weir run --monitor` listen on unless told otherwise. */
export const DEFAULT_MONITOR_PORT = 9464
export const DEFAULT_MONITOR_HOST = '127.0.0.1'

/** One timeliness SLO: output timeliness (now minus output watermark) at most `timelinessMs`. */
export interface SloConfig {
  /** Only this cluster; every cluster the monitor watches when absent. */
  cluster?: string
  pipeline: string
  /** An output stage of the pipeline. */
  output: string
  timelinessMs: number
}

/** Pipeline, stage and cluster names as the runtime allows them (a subject token each). */
const NAME = /^[A-Za-z0-9_-]{1,64}$/
/** Stage names may carry a side output (`stage.side`). */
const STAGE = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})?$/
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m)$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 }
/** A day: an SLO above that is almost certainly a typo (`2m` meant as `2s`?), not a target. */
const MAX_SLO_MS = 86_400_000

/** `250ms`, `2s`, `1.5s`, `1m` → ms. Throws a ConfigError naming `field`. */
export function parseDuration(text: string, field: string): number {
  const m = DURATION.exec(text.trim())
  if (m === null) throw new ConfigError(field, `'${text}' is not a duration (like 250ms, 2s, 1m)`)
  const ms = Number(m[1]) * UNIT_MS[m[2]!]!
  if (!(ms > 0) || ms > MAX_SLO_MS) throw new ConfigError(field, `'${text}' must be above 0 and at most 24h`)
  return ms
}

/**
 * `[CLUSTER/]PIPELINE/OUTPUT=DURATION` (the `--slo` flag of `weir monitor`). With
 * `impliedPipeline` (`weir run --slo OUTPUT=DURATION`) the pipeline is not given.
 */
export function parseSloFlag(text: string, field: string, impliedPipeline?: string): SloConfig {
  const eq = text.lastIndexOf('=')
  if (eq < 0) throw new ConfigError(field, `expected ${impliedPipeline === undefined ? 'PIPELINE/OUTPUT' : 'OUTPUT'}=DURATION, got '${text}'`)
  const timelinessMs = parseDuration(text.slice(eq + 1), field)
  const target = text.slice(0, eq)
  const parts = impliedPipeline === undefined ? target.split('/') : [impliedPipeline, target]
  if (parts.length === 3) {
    const [cluster, pipeline, output] = parts as [string, string, string]
    return checkSlo({ cluster, pipeline, output, timelinessMs }, field, text)
  }
  if (parts.length !== 2) throw new ConfigError(field, `expected ${impliedPipeline === undefined ? '[CLUSTER/]PIPELINE/OUTPUT' : 'OUTPUT'}=DURATION, got '${text}'`)
  const [pipeline, output] = parts as [string, string]
  return checkSlo({ pipeline, output, timelinessMs }, field, text)
}

function checkSlo(slo: SloConfig, field: string, text: string): SloConfig {
  if (slo.cluster !== undefined && !NAME.test(slo.cluster)) throw new ConfigError(field, `'${slo.cluster}' in '${text}' is not a cluster name`)
  if (!NAME.test(slo.pipeline)) throw new ConfigError(field, `'${slo.pipeline}' in '${text}' is not a pipeline name`)
  if (!STAGE.test(slo.output)) throw new ConfigError(field, `'${slo.output}' in '${text}' is not a stage name`)
  return slo
}

const sloSchema = z
  .object({
    cluster: z.string().regex(NAME, 'not a cluster name').optional(),
    pipeline: z.string().regex(NAME, 'not a pipeline name'),
    output: z.string().regex(STAGE, 'not a stage name'),
    timelinessMs: z.number().positive().max(MAX_SLO_MS),
  })
  .strict()

/** The `--config` file of `weir monitor`. Unknown keys are refused: a typo must not silently drop an SLO. */
export const monitorConfigSchema = z
  .object({
    slos: z.array(sloSchema).default([]),
    port: z.number().int().min(0).max(65535).optional(),
    host: z.string().min(1).optional(),
    cluster: z.string().optional(),
  })
  .strict()
export type MonitorConfig = z.infer<typeof monitorConfigSchema>

/** Validates a parsed config file; the ConfigError names the first bad field (`slos.0.timelinessMs`). */
export function parseMonitorConfig(raw: unknown, file: string): MonitorConfig {
  const r = monitorConfigSchema.safeParse(raw)
  if (r.success) return r.data
  const issue = r.error.issues[0]!
  const path = issue.path.join('.')
  const field = issue.code === 'unrecognized_keys' ? [path, issue.keys[0]].filter((p) => p !== '').join('.') : path || 'config'
  throw new ConfigError(field, `${issue.message} (in ${file})`, { file })
}

/**
 * Refuses a bind address anyone else can reach unless a token guards it: the API shows
 * pipeline names, hosts and pids, and nothing else stands in front of it.
 */
export function checkMonitorBinding(host: string, token: string | undefined, field = '--host'): void {
  checkPublicBinding(host, token, field, '--token-file FILE or WEIR_MONITOR_TOKEN')
}

/** Throws a ConfigError naming `field` unless `text` is a port number (0 = any free port). */
export function parsePort(text: string, field: string): number {
  const port = Number(text)
  if (!/^\d{1,5}$/.test(text) || port > 65535) throw new ConfigError(field, `expected a port number in 0..65535, got '${text}'`)
  return port
}
