/** The runtime's structured logger (pino). Fields match the typed errors: topic, partition, offset, stage, actor. */
import { pino, type Logger } from 'pino'

export function createLogger(level = process.env.WEIR_LOG_LEVEL ?? 'warn'): Logger {
  return pino({ level, base: { service: 'weir' } }, pino.destination(2))
}

export type { Logger }
