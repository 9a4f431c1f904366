/**
 * How every weir process connects to NATS: the server from the bus URL, credentials and TLS
 * from the URL, the environment or files, checked at start (a bad combination is a
 * ConfigError naming the field) and never printed: logs and errors name the server without
 * credentials. The NatsBus, the coordinator's lease and its metadata all connect through
 * `connectNats`, so they authenticate the same way and fail the same way.
 *
 * @example
 * const target = resolveNatsTarget({ url: 'tls://nats:4222', env: process.env })
 * const nc = await connectNats(target, { name: 'weir-worker' })
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { connect, credsAuthenticator, nkeyAuthenticator, type Authenticator, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node'
import { ConfigError, WeirError, type ErrorContext } from '../../errors.ts'

/** Credentials for the server; `from` names where they came from (never the secret itself). */
export type NatsCredentials =
  | { kind: 'none' }
  | { kind: 'token'; token: string; from: string }
  | { kind: 'user'; user: string; password: string; from: string }
  | { kind: 'nkey'; file: string; seed: Uint8Array; from: string }
  | { kind: 'creds'; file: string; creds: Uint8Array; from: string }

/** TLS: required when set; files are read again on every (re)connect, so certificates can rotate. */
export interface NatsTls {
  caFile?: string
  certFile?: string
  keyFile?: string
}

/** Where and how to connect. `servers` carry no credentials: they are safe to log. */
export interface NatsTarget {
  servers: string[]
  credentials: NatsCredentials
  tls?: NatsTls
}

/** The bus could not be reached; `servers` names where we tried. It may come back. */
export class BusUnavailableError extends WeirError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('WEIR_BUS_UNAVAILABLE', message, context, { retriable: true, cause })
  }
}

/**
 * The server refused our credentials, or the TLS handshake failed on trust (an unknown CA, a
 * name mismatch, TLS on one side only): retrying cannot help, an operator must fix the
 * configuration. `servers` names the server, `credentials` what we presented (not the secret).
 */
export class BusAuthError extends WeirError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('WEIR_BUS_UNAUTHORIZED', message, context, { retriable: false, cause })
  }
}

/** The CLI options that point to credentials and TLS files (the user name is the one value). */
export interface NatsSecurityOptions {
  tokenFile?: string
  user?: string
  passwordFile?: string
  creds?: string
  nkey?: string
  ca?: string
  cert?: string
  key?: string
}

/** Option and environment variable of each setting, as an operator writes them. */
const FIELDS = {
  tokenFile: ['--nats-token-file', 'WEIR_NATS_TOKEN'],
  user: ['--nats-user', 'WEIR_NATS_USER'],
  passwordFile: ['--nats-password-file', 'WEIR_NATS_PASSWORD'],
  creds: ['--nats-creds', 'WEIR_NATS_CREDS'],
  nkey: ['--nats-nkey', 'WEIR_NATS_NKEY'],
  ca: ['--nats-ca', 'WEIR_NATS_CA'],
  cert: ['--nats-cert', 'WEIR_NATS_CERT'],
  key: ['--nats-key', 'WEIR_NATS_KEY'],
} as const satisfies Record<keyof NatsSecurityOptions, readonly [string, string]>

export interface NatsSources {
  /** `nats://[user:pass@|token@]host:port` or `tls://…`. */
  url: string
  /** Where the URL came from, for errors: `--bus` or `WEIR_BUS`. */
  urlField?: string
  /** Command-line options; each wins over its environment variable. */
  options?: NatsSecurityOptions
  /** WEIR_NATS_* (token, user and password are values; the others name files). Unset or empty = not given. */
  env?: Record<string, string | undefined>
  /** Relative file paths resolve against this. */
  cwd?: string
}

const URL_SHAPE = /^(nats|tls):\/\/(?:([^\s/@]*)@)?([^\s/:@]+):(\d{1,5})$/

/** The URL with any credentials replaced by `***`: what logs, errors and output may show. */
export function redactNatsUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1***@')
}

/** Throws a ConfigError naming `field` unless `url` is nats:// or tls://[credentials@]host:port. */
export function checkNatsUrl(url: string, field: string): void {
  const m = URL_SHAPE.exec(url)
  if (m === null) throw new ConfigError(field, `'${redactNatsUrl(url)}' is not a nats://host:port URL (nor tls://host:port)`)
  const port = Number(m[4])
  if (port < 1 || port > 65535) throw new ConfigError(field, `port ${port} of '${redactNatsUrl(url)}' is not in 1..65535`)
}

interface Setting {
  value: string
  field: string
}

/** The option if given, else the environment variable (empty counts as unset). */
function setting(sources: NatsSources, name: keyof NatsSecurityOptions): Setting | undefined {
  const [option, variable] = FIELDS[name]
  const fromOption = sources.options?.[name]
  if (fromOption !== undefined) {
    if (fromOption === '') throw new ConfigError(option, 'must not be empty')
    return { value: fromOption, field: option }
  }
  const fromEnv = sources.env?.[variable]
  return fromEnv === undefined || fromEnv === '' ? undefined : { value: fromEnv, field: variable }
}

function readFile(path: string, field: string, cwd: string): { file: string; data: Buffer } {
  const file = resolve(cwd, path)
  try {
    return { file, data: readFileSync(file) }
  } catch (err) {
    throw new ConfigError(field, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

/** A secret given as a file by its option and as a value by its variable. */
function secret(s: Setting, cwd: string): string {
  const text = s.field.startsWith('--') ? readFile(s.value, s.field, cwd).data.toString('utf8').trim() : s.value
  if (text === '') throw new ConfigError(s.field, s.field.startsWith('--') ? `${s.value} is empty` : 'must not be empty')
  return text
}

function decodeUserinfo(part: string, field: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new ConfigError(field, 'the credentials in the URL are not valid percent-encoding')
  }
}

/**
 * Resolves the server, credentials and TLS of a bus URL from the URL, the options and the
 * environment, reading and checking every file now. Throws a ConfigError naming the field:
 * two kinds of credentials at once, a user without a password, a certificate without its
 * key, an unreadable or malformed file.
 *
 * @example
 * const target = resolveNatsTarget({ url: 'nats://nats:4222', options: { creds: 'worker.creds' }, env: process.env })
 * target.servers // ['nats://nats:4222']
 */
export function resolveNatsTarget(sources: NatsSources): NatsTarget {
  const urlField = sources.urlField ?? '--bus'
  const cwd = sources.cwd ?? process.cwd()
  checkNatsUrl(sources.url, urlField)
  const [, scheme, userinfo, host, port] = URL_SHAPE.exec(sources.url)!
  const server = `nats://${host}:${port}`

  const given = {
    token: setting(sources, 'tokenFile'),
    user: setting(sources, 'user'),
    password: setting(sources, 'passwordFile'),
    creds: setting(sources, 'creds'),
    nkey: setting(sources, 'nkey'),
  }
  const methods: Array<{ kind: NatsCredentials['kind']; field: string }> = []
  if (given.token !== undefined) methods.push({ kind: 'token', field: given.token.field })
  if (given.user !== undefined || given.password !== undefined) methods.push({ kind: 'user', field: (given.user ?? given.password)!.field })
  if (given.creds !== undefined) methods.push({ kind: 'creds', field: given.creds.field })
  if (given.nkey !== undefined) methods.push({ kind: 'nkey', field: given.nkey.field })
  if (userinfo !== undefined) {
    if (methods.length > 0) throw new ConfigError(methods[0]!.field, `credentials are given both in ${urlField} and in ${methods[0]!.field}; give them one way`)
  } else if (methods.length > 1) {
    throw new ConfigError(methods[1]!.field, `${methods[0]!.field} and ${methods[1]!.field} are two kinds of NATS credentials; give one`)
  }

  let credentials: NatsCredentials = { kind: 'none' }
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':')
    if (colon < 0) {
      const token = decodeUserinfo(userinfo, urlField)
      if (token === '') throw new ConfigError(urlField, 'the token before @ is empty')
      credentials = { kind: 'token', token, from: urlField }
    } else {
      const user = decodeUserinfo(userinfo.slice(0, colon), urlField)
      const password = decodeUserinfo(userinfo.slice(colon + 1), urlField)
      if (user === '' || password === '') throw new ConfigError(urlField, `the ${user === '' ? 'user' : 'password'} before @ is empty`)
      credentials = { kind: 'user', user, password, from: urlField }
    }
  } else if (given.token !== undefined) {
    const token = secret(given.token, cwd)
    if (/\s/.test(token)) throw new ConfigError(given.token.field, 'the token must not contain whitespace')
    credentials = { kind: 'token', token, from: given.token.field }
  } else if (given.user !== undefined || given.password !== undefined) {
    if (given.user === undefined) throw new ConfigError(FIELDS.user[given.password!.field.startsWith('--') ? 0 : 1], `a password (${given.password!.field}) needs a user`)
    if (given.password === undefined) throw new ConfigError(FIELDS.passwordFile[given.user.field.startsWith('--') ? 0 : 1], `user '${given.user.value}' (${given.user.field}) needs a password`)
    credentials = { kind: 'user', user: given.user.value, password: secret(given.password, cwd), from: given.user.field }
  } else if (given.creds !== undefined) {
    const { file, data } = readFile(given.creds.value, given.creds.field, cwd)
    // Parses the JWT and the seed now: a broken file is refused at start, not at connect.
    checkAuthenticator(credsAuthenticator(data), given.creds.field, `${file} is not a NATS credentials file (a user JWT and an nkey seed)`)
    credentials = { kind: 'creds', file, creds: data, from: given.creds.field }
  } else if (given.nkey !== undefined) {
    const { file, data } = readFile(given.nkey.value, given.nkey.field, cwd)
    const seed = new TextEncoder().encode(data.toString('utf8').trim())
    if (!/^SU[A-Z2-7]{56}$/.test(new TextDecoder().decode(seed))) throw new ConfigError(given.nkey.field, `${file} does not hold an nkey user seed (SU…)`)
    checkAuthenticator(nkeyAuthenticator(seed), given.nkey.field, `${file} does not hold a valid nkey user seed`)
    credentials = { kind: 'nkey', file, seed, from: given.nkey.field }
  }

  const ca = setting(sources, 'ca')
  const cert = setting(sources, 'cert')
  const key = setting(sources, 'key')
  if ((cert === undefined) !== (key === undefined)) {
    const missing = cert === undefined ? FIELDS.cert[key!.field.startsWith('--') ? 0 : 1] : FIELDS.key[cert.field.startsWith('--') ? 0 : 1]
    throw new ConfigError(missing, `a client certificate needs its key and the key its certificate (${(cert ?? key)!.field} is given)`)
  }
  let tls: NatsTls | undefined
  if (scheme === 'tls' || ca !== undefined || cert !== undefined) {
    tls = {}
    if (ca !== undefined) tls.caFile = readFile(ca.value, ca.field, cwd).file
    if (cert !== undefined) tls.certFile = readFile(cert.value, cert.field, cwd).file
    if (key !== undefined) tls.keyFile = readFile(key.value, key.field, cwd).file
  }
  return { servers: [server], credentials, tls }
}

function checkAuthenticator(auth: Authenticator, field: string, message: string): void {
  try {
    auth('weir-check')
  } catch {
    throw new ConfigError(field, message)
  }
}

/** What a target presents, for logs and errors: never a secret. */
export function describeCredentials(c: NatsCredentials): string {
  switch (c.kind) {
    case 'none':
      return 'no credentials'
    case 'token':
      return `a token (${c.from})`
    case 'user':
      return `user '${c.user}' (${c.from})`
    case 'nkey':
      return `the nkey seed in ${c.file} (${c.from})`
    case 'creds':
      return `the credentials file ${c.file} (${c.from})`
  }
}

/** Reads `file` again on each (re)connect; if it went away, the content read at start. */
function rereading(file: string, atStart: Uint8Array): () => Uint8Array {
  return () => {
    try {
      return readFileSync(file)
    } catch {
      return atStart
    }
  }
}

/** The nats.js options for a target's credentials and TLS. */
export function natsConnectionOptions(target: NatsTarget): Pick<NodeConnectionOptions, 'servers' | 'token' | 'user' | 'pass' | 'authenticator' | 'tls'> {
  const c = target.credentials
  const options: ReturnType<typeof natsConnectionOptions> = { servers: target.servers }
  if (c.kind === 'token') options.token = c.token
  if (c.kind === 'user') Object.assign(options, { user: c.user, pass: c.password })
  if (c.kind === 'nkey') {
    const read = rereading(c.file, c.seed)
    options.authenticator = nkeyAuthenticator(() => new TextEncoder().encode(new TextDecoder().decode(read()).trim()))
  }
  if (c.kind === 'creds') options.authenticator = credsAuthenticator(rereading(c.file, c.creds))
  if (target.tls !== undefined) options.tls = { ...target.tls }
  return options
}

/** TLS errors that mean the configuration is wrong, not that the network is down (Node's codes). */
const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_SIGNATURE_FAILURE',
])

function causes(err: unknown): Array<Error & { code?: string }> {
  const chain: Array<Error & { code?: string }> = []
  for (let e = err; e instanceof Error && chain.length < 8; e = e.cause) chain.push(e as Error & { code?: string })
  return chain
}

/**
 * What a failed connect means: refused credentials or a TLS trust failure (BusAuthError, not
 * retriable) or anything else (BusUnavailableError, retriable). Messages name the server
 * without credentials.
 */
export function connectError(target: NatsTarget, err: unknown): BusAuthError | BusUnavailableError {
  const where = target.servers.join(', ')
  const context = { servers: target.servers, credentials: describeCredentials(target.credentials) }
  const chain = causes(err)
  const auth = chain.find((e) => e.name === 'AuthorizationError' || e.name === 'UserAuthenticationExpiredError')
  if (auth !== undefined) return new BusAuthError(`NATS at ${where} refused ${describeCredentials(target.credentials)}: ${auth.message}`, context, err)
  const tls = chain.find((e) => (e.code !== undefined && TLS_TRUST_CODES.has(e.code)) || /\btls\b/i.test(e.message))
  if (tls !== undefined) return new BusAuthError(`TLS with NATS at ${where} failed: ${tls.message}${target.tls === undefined ? ' (the server requires TLS: use tls:// and WEIR_NATS_CA or --nats-ca)' : ''}`, context, err)
  return new BusUnavailableError(
    `cannot connect to NATS at ${where}: ${(err as Error)?.message ?? String(err)}: is nats-server running there, and reachable from this host? ` +
      'Check the URL in --bus (or WEIR_BUS); for a local server, scripts/services.sh up in a weir checkout starts one on 127.0.0.1:4222',
    { servers: target.servers },
    err,
  )
}

export interface ConnectNatsOptions {
  /** Connection name shown by the server (`nats server report connections`). */
  name: string
  /** Give up connecting at start after this long, ms (reconnects later are unlimited). */
  timeoutMs?: number
}

/**
 * Connects with the target's credentials and TLS; reconnects forever afterwards. At start,
 * an unreachable server is a BusUnavailableError and refused credentials a BusAuthError,
 * both naming the server.
 *
 * @example
 * const nc = await connectNats(resolveNatsTarget({ url: 'nats://127.0.0.1:4222' }), { name: 'weir-lease-prod' })
 */
export async function connectNats(target: NatsTarget, options: ConnectNatsOptions): Promise<NatsConnection> {
  try {
    return await connect({
      ...natsConnectionOptions(target),
      name: options.name,
      timeout: options.timeoutMs ?? 5000,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      waitOnFirstConnect: false,
    })
  } catch (err) {
    throw connectError(target, err)
  }
}
