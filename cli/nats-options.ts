/**
 * The NATS credential and TLS options every command that talks to the bus takes (run --bus,
 * coordinator, worker, monitor, status), so each process authenticates the same way.
 * Options name files; each wins over its WEIR_NATS_* variable, as --token-file does over
 * WEIR_MONITOR_TOKEN for the monitor.
 */
import { ConfigError } from '../runtime/errors.ts'
import { resolveBusTarget, type BusSecurityOptions, type BusTarget } from '../runtime/open-bus.ts'

/** parseArgs definitions of the options. */
export const NATS_OPTIONS = {
  'nats-token-file': { type: 'string' },
  'nats-user': { type: 'string' },
  'nats-password-file': { type: 'string' },
  'nats-creds': { type: 'string' },
  'nats-nkey': { type: 'string' },
  'nats-ca': { type: 'string' },
  'nats-cert': { type: 'string' },
  'nats-key': { type: 'string' },
} as const

type NatsOptionName = keyof typeof NATS_OPTIONS
type Values = Partial<Record<NatsOptionName, string | boolean | string[] | undefined>>

const NAMES: Record<NatsOptionName, keyof BusSecurityOptions> = {
  'nats-token-file': 'tokenFile',
  'nats-user': 'user',
  'nats-password-file': 'passwordFile',
  'nats-creds': 'creds',
  'nats-nkey': 'nkey',
  'nats-ca': 'ca',
  'nats-cert': 'cert',
  'nats-key': 'key',
}

function securityOptions(values: Values): BusSecurityOptions {
  const options: BusSecurityOptions = {}
  for (const [flag, name] of Object.entries(NAMES) as Array<[NatsOptionName, keyof BusSecurityOptions]>) {
    const v = values[flag]
    if (typeof v === 'string') options[name] = v
  }
  return options
}

/** Refuses NATS options given without a bus (`weir run` without --bus), naming the first. */
export function refuseNatsOptionsWithoutBus(values: Values): void {
  for (const flag of Object.keys(NATS_OPTIONS) as NatsOptionName[]) {
    if (values[flag] !== undefined) throw new ConfigError(`--${flag}`, 'only with --bus')
  }
}

/**
 * The bus target of a command: `url` (from `urlField`, --bus or WEIR_BUS) with the NATS
 * options and WEIR_NATS_* variables, every file read and checked now (ConfigError naming
 * the field).
 */
export function busTargetOf(url: string, urlField: string, values: Values, env: NodeJS.ProcessEnv, cwd = process.cwd()): BusTarget {
  return resolveBusTarget({ url, urlField, options: securityOptions(values), env, cwd })
}
