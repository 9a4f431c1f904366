/**
 * Opens the control bus a run asks for: in-process when none is given (the runner's
 * default), or NATS for `nats://host:port` (`tls://` for TLS), with credentials from the
 * URL, the environment or files (resolveBusTarget). The one place, with open-pipe.ts, that
 * knows the adapters.
 *
 * @example
 * const bus = await openBus(resolveBusTarget({ url: 'nats://127.0.0.1:4222', env: process.env }), { name: 'weir-run-wordcount' })
 */
import type { Logger } from 'pino'
import type { ControlBus } from './control/bus.ts'
import { LocalBus } from './control/local/local-bus.ts'
import { NatsBus } from './control/nats/nats-bus.ts'
import { checkNatsUrl, redactNatsUrl, resolveNatsTarget, type NatsSources, type NatsTarget } from './control/nats/nats-connection.ts'
import { createLogger } from './log.ts'

export type { NatsCredentials, NatsSecurityOptions as BusSecurityOptions, NatsSources as BusSources, NatsTarget as BusTarget, NatsTls } from './control/nats/nats-connection.ts'
/** The coordinator's lease and metadata live in NATS KV: they connect here, as the bus does. */
export { BusAuthError, BusUnavailableError, connectNats } from './control/nats/nats-connection.ts'

/** Checks a bus URL without connecting (for refusing bad input before anything starts). */
export function checkBusUrl(url: string, field = '--bus'): void {
  checkNatsUrl(url, field)
}

/** The bus URL as logs and output may show it: credentials replaced by `***`. */
export function redactBusUrl(url: string): string {
  return redactNatsUrl(url)
}

/**
 * Where and how to connect: the server of `url`, credentials and TLS from the URL, the
 * options (files) and the environment (WEIR_NATS_*), every file read and checked now.
 * Throws a ConfigError naming the field.
 */
export function resolveBusTarget(sources: NatsSources): NatsTarget {
  return resolveNatsTarget(sources)
}

/**
 * Connects to the bus. A URL string takes credentials from the URL only; a target from
 * resolveBusTarget brings the environment's and files' too. Refused credentials are a
 * BusAuthError (not retriable), an unreachable server a BusUnavailableError; both name the
 * server without credentials.
 */
export async function openBus(target: string | NatsTarget, options: { name?: string; log?: Logger } = {}): Promise<ControlBus> {
  const resolved = typeof target === 'string' ? resolveNatsTarget({ url: target }) : target
  return NatsBus.connect({ servers: resolved.servers, credentials: resolved.credentials, tls: resolved.tls, name: options.name, log: options.log })
}

/** The in-process bus (what a run uses without --bus), for a caller that also listens on it, like `weir run --monitor`. */
export function localBus(log?: Logger): ControlBus {
  return new LocalBus(log ?? createLogger())
}
