/**
 * `weir monitor --bus nats://…`: the independent timeliness monitor. It reads only the
 * control bus, so it keeps answering while the pipe, the coordinator or workers are down.
 * Every refusal (bad option, bad config file, a public host without a token) happens
 * before it connects or listens (exit 2); an unreachable bus at start is exit 1.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Logger } from 'pino'
import { checkClusterName, type ControlBus } from '../runtime/control/bus.ts'
import { ConfigError } from '../runtime/errors.ts'
import { openBus, type BusTarget } from '../runtime/open-bus.ts'
import { parseMonitorConfig, type SloConfig } from '../monitor/config.ts'
import { checkMonitorBinding, DEFAULT_MONITOR_HOST, DEFAULT_MONITOR_PORT, parsePort, parseSloFlag, startMonitor, type RunningMonitor } from '../monitor/monitor.ts'
import { isLegacyMonitorConfig } from './config-file.ts'
import { busTargetOf, NATS_OPTIONS } from './nats-options.ts'
import { parseCommandArgs } from './options.ts'
import { commandLogger, printError, printRefusal } from './report.ts'
import { readToken } from './token.ts'

import { MONITOR_USAGE } from './usage.ts'

export interface MonitorArgs {
  bus: string
  /** The bus's server, credentials and TLS. */
  busTarget: BusTarget
  /** A cluster name, or `*` for every cluster. */
  cluster: string
  port: number
  host: string
  token: string | undefined
  slos: SloConfig[]
}

function readText(file: string, field: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(field, `cannot read ${file}: ${(err as Error).message}`)
  }
}

/** The options of `weir monitor` (a config file's `monitor` section takes the same, camelCased). */
export const MONITOR_OPTIONS = {
  bus: { type: 'string' },
  cluster: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  config: { type: 'string' },
  slo: { type: 'string', multiple: true },
  'token-file': { type: 'string' },
  ...NATS_OPTIONS,
  help: { type: 'boolean', short: 'h' },
} as const

/** Parses and validates `monitor`'s arguments; `help` when --help was given. Throws UsageError or ConfigError. */
export function parseMonitorArgs(argv: string[], cwd = process.cwd(), env: NodeJS.ProcessEnv = process.env): MonitorArgs | 'help' {
  const parsed = parseCommandArgs('monitor', { args: argv, allowPositionals: false, options: MONITOR_OPTIONS }, { cwd, env })
  const { values } = parsed
  if (values.help) return 'help'

  const bus = values.bus ?? env.WEIR_BUS
  if (bus === undefined) throw new ConfigError('--bus', 'the monitor reads the control bus: give --bus nats://host:port (or WEIR_BUS)')
  const busTarget = busTargetOf(bus, values.bus === undefined ? 'WEIR_BUS' : '--bus', values, env, cwd)

  const config = values.config === undefined ? undefined : parseConfigFile(resolve(cwd, values.config))
  const cluster = values.cluster ?? config?.cluster ?? '*'
  if (cluster !== '*') checkClusterName(cluster, values.cluster === undefined ? 'cluster' : '--cluster')

  const port = values.port === undefined ? (config?.port ?? DEFAULT_MONITOR_PORT) : parsePort(values.port, '--port')
  const host = values.host ?? config?.host ?? DEFAULT_MONITOR_HOST

  const token = readToken({ file: values['token-file'], fileOption: '--token-file', envName: 'WEIR_MONITOR_TOKEN' }, cwd, env)
  checkMonitorBinding(host, token, values.host === undefined && config?.host !== undefined ? 'host' : '--host')

  const slos = [...(config?.slos ?? []), ...(values.slo ?? []).map((s) => parseSloFlag(s, '--slo'))]
  return { bus, busTarget, cluster, port, host, token, slos }
}

/** The monitor's own older `--config` file; undefined for a weir.config file (parseCommandArgs applied that). */
function parseConfigFile(file: string): ReturnType<typeof parseMonitorConfig> | undefined {
  if (/\.ya?ml$/i.test(file)) return undefined
  let raw: unknown
  try {
    raw = JSON.parse(readText(file, '--config'))
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError('--config', `${file} is not JSON: ${(err as Error).message}`)
  }
  return isLegacyMonitorConfig(raw) ? parseMonitorConfig(raw, file) : undefined
}

function monitorLogger(): Logger {
  return commandLogger('weir-monitor', 'info')
}

export async function monitorCommand(argv: string[]): Promise<number> {
  let args: MonitorArgs
  let log: Logger
  try {
    const parsed = parseMonitorArgs(argv)
    if (parsed === 'help') {
      process.stdout.write(MONITOR_USAGE)
      return 0
    }
    args = parsed
    log = monitorLogger()
  } catch (err) {
    return printRefusal(err, 'monitor')
  }

  let bus: ControlBus | undefined
  let monitor: RunningMonitor
  try {
    bus = await openBus(args.busTarget, { name: 'weir-monitor', log })
    monitor = await startMonitor({ bus, cluster: args.cluster, port: args.port, host: args.host, token: args.token, slos: args.slos, log })
  } catch (err) {
    await bus?.close().catch(() => undefined)
    printError(err)
    return err instanceof ConfigError ? 2 : 1
  }
  process.stdout.write(`weir monitor: dashboard ${monitor.url} (cluster ${args.cluster}, ${args.slos.length} SLOs)\n`)

  // Runs until a signal: NATS going away is the adapter's business (it reconnects), not a reason to stop.
  const signal = await new Promise<NodeJS.Signals>((resolveSignal) => {
    process.once('SIGINT', () => resolveSignal('SIGINT'))
    process.once('SIGTERM', () => resolveSignal('SIGTERM'))
  })
  log.info({ signal }, 'monitor stopping')
  await monitor.close()
  await bus.close().catch(() => undefined)
  return 0
}
