/**
 * The bearer-token rule of weir's HTTP endpoints (the monitor, a worker's /metrics): an
 * address other machines can reach is refused at start unless a token guards it, and with
 * a token every request must carry it. Tokens are compared in constant time.
 *
 * @example
 * checkPublicBinding(host, token, '--metrics-host', '--metrics-token-file FILE or WEIR_METRICS_TOKEN')
 * if (token !== undefined && !requestHasToken(req.headers, token)) res.writeHead(401).end()
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { isIP } from 'node:net'
import { ConfigError } from './errors.ts'

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1'
  return false
}

/**
 * Refuses (ConfigError naming `field`) an empty bind address, or one anyone else can reach
 * without a token; `howToGiveToken` tells the user where the token comes from.
 */
export function checkPublicBinding(host: string, token: string | undefined, field: string, howToGiveToken: string): void {
  if (host.trim() === '') throw new ConfigError(field, 'must not be empty')
  if (!isLoopback(host) && (token === undefined || token === '')) {
    throw new ConfigError(field, `'${host}' is reachable from other machines: give a token (${howToGiveToken}) or bind 127.0.0.1`)
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

/** Constant-time: comparing digests keeps the length of the token out of the timing too. */
export function sameToken(given: string | undefined, token: string): boolean {
  return given !== undefined && timingSafeEqual(digest(given), digest(token))
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? '')
  return m?.[1]
}

/** The value of cookie `name`, if the request carries it. */
export function cookieValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const header = headers.cookie
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeCookie(part.slice(eq + 1).trim())
  }
  return undefined
}

/** A malformed escape is no token (and no reason for a 500). */
function decodeCookie(value: string): string | undefined {
  try {
    return decodeURIComponent(value)
  } catch {
    return undefined
  }
}

/** True when the request carries `token` as a bearer token, or in cookie `cookie` when one is named. */
export function requestHasToken(headers: IncomingHttpHeaders, token: string, cookie?: string): boolean {
  return sameToken(bearerToken(headers), token) || (cookie !== undefined && sameToken(cookieValue(headers, cookie), token))
}
