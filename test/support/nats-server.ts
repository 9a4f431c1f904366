/**
 * A private nats-server for tests that need a configuration the shared one (port 4222) does
 * not have: authorization with per-role permissions, TLS. It runs the Debian `nats-server`
 * binary (scripts/services.sh installs it) on a free loopback port with JetStream in a temp
 * dir, and is SIGKILLed when the test file ends.
 *
 * @example
 * const server = await startNatsServer({ authorization: authorizationFor('prod', users) })
 * const url = server.url // nats://127.0.0.1:PORT, no credentials in it
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { nkeys } from '@nats-io/transport-node'
import { afterAll } from 'vitest'
import { reachable } from './services.ts'
import { freePort, until } from './weir-cli.ts'

export interface NatsServer {
  /** `nats://127.0.0.1:PORT` */
  url: string
  port: number
  dir: string
  /** What the server logged so far (permission violations, authorization errors). */
  log(): string
  stop(): Promise<void>
}

export interface NatsServerOptions {
  /** The body of an `authorization { … }` block (see natsAuthorization). */
  authorization?: string
  /** A config file to include (e.g. deploy/nats/weir-auth.conf), with the environment its `$VARIABLES` come from. */
  include?: { file: string; env: Record<string, string> }
  /** A `tls { … }` block's body. */
  tls?: string
  /** Further configuration, as it goes in the file (e.g. `operator: …` and a resolver for JWT users). */
  raw?: string
  /** JetStream (the coordinator's KV); default on. Operator mode without a system account needs it off. */
  jetstream?: boolean
  /** Listen on this port (a restart of a server on the port it had); default a free one. */
  port?: number
}

/** deploy/nats/weir-auth.conf: the documented per-role permissions of cluster `prod`. */
export const WEIR_AUTH_CONF = join(dirname(fileURLToPath(import.meta.url)), '../../deploy/nats/weir-auth.conf')

const running: NatsServer[] = []
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()))
})

/**
 * True when the nats-server binary can be run here. Missing: throws under
 * WEIR_REQUIRE_SERVICES=1 (as requireService does), else prints why the tests skip.
 */
export function requireNatsServerBinary(): boolean {
  try {
    execFileSync('nats-server', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    const message = 'the nats-server binary is not installed (scripts/services.sh up nats installs it)'
    if (process.env.WEIR_REQUIRE_SERVICES === '1') throw new Error(`WEIR_REQUIRE_SERVICES=1: ${message}`)
    console.warn(`skipping tests that need a private nats-server: ${message}`)
    return false
  }
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-nats-server-'))
  const port = options.port ?? await freePort()
  const conf = [
    `listen: 127.0.0.1:${port}`,
    options.jetstream === false ? '' : `jetstream { store_dir: "${join(dir, 'js')}", max_memory_store: 64M, max_file_store: 256M }`,
    options.authorization === undefined ? '' : `authorization {\n${options.authorization}\n}`,
    options.tls === undefined ? '' : `tls {\n${options.tls}\n}`,
    options.raw ?? '',
    // nats-server takes include paths relative to the including file only.
    options.include === undefined ? '' : `include "${relative(dir, options.include.file)}"`,
  ].join('\n')
  writeFileSync(join(dir, 'nats.conf'), conf)
  const env = { ...process.env, ...options.include?.env }
  const child: ChildProcess = spawn('nats-server', ['-c', join(dir, 'nats.conf')], { stdio: ['ignore', 'pipe', 'pipe'], env })
  let log = ''
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    dir,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
      rmSync(dir, { recursive: true, force: true })
    },
  }
  running.push(server)
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}: ${log.slice(-2000)}`)
    return log.includes('Server is ready') && (await reachable(server.url, 500))
  }, 20_000, `nats-server on ${port} ready`)
  return server
}

/** Publish and subscribe permissions of one user; `allow` lists are NATS subject patterns. */
export interface NatsPermissions {
  publish: string[]
  subscribe: string[]
}

/** One user of the `authorization` block: user/password, a token-less nkey, with permissions. */
export type NatsUser = ({ user: string; password: string } | { nkey: string }) & { permissions?: NatsPermissions }

function list(items: string[]): string {
  return `[${items.map((s) => JSON.stringify(s)).join(', ')}]`
}

/** An `authorization` block body with these users (each with its permissions, if given). */
export function natsAuthorization(users: NatsUser[]): string {
  const entries = users.map((u) => {
    const id = 'nkey' in u ? `nkey: ${JSON.stringify(u.nkey)}` : `user: ${JSON.stringify(u.user)}, password: ${JSON.stringify(u.password)}`
    const perms = u.permissions === undefined ? '' : `, permissions: { publish: { allow: ${list(u.permissions.publish)} }, subscribe: { allow: ${list(u.permissions.subscribe)} } }`
    return `  { ${id}${perms} }`
  })
  return `users: [\n${entries.join('\n')}\n]`
}

/** PEM files of a throwaway CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it. */
export interface TlsFiles {
  ca: string
  serverCert: string
  serverKey: string
  clientCert: string
  clientKey: string
}

/** Makes a CA and certificates with openssl in `dir` (P-256 keys, valid two days). */
export function makeTlsFiles(dir: string): TlsFiles {
  const f = (name: string): string => join(dir, name)
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=weir-test-ca')
  const sign = (name: string, ext: string): void => {
    openssl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=weir-test-${name}`)
    writeFileSync(f(`${name}.ext`), ext)
    openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '2', '-extfile', f(`${name}.ext`))
  }
  sign('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  sign('client', 'extendedKeyUsage=clientAuth\n')
  return { ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') }
}

/**
 * NATS operator mode for tests of `.creds` files: an operator and one account made here (JWTs
 * signed with their nkeys), the server configuration that trusts them (`raw`, with
 * `jetstream: false`: operator mode wants a system account for JetStream), and user
 * credentials files with permissions, signed by that account or, to be refused, by another.
 */
export interface OperatorMode {
  raw: string
  /** Writes `<name>.creds` in `dir` for a user with these permissions and returns its path. */
  userCreds(dir: string, name: string, permissions: NatsPermissions, options?: { untrusted?: boolean }): string
}

const b64url = (data: string | Uint8Array): string => Buffer.from(data).toString('base64url')

/** A NATS JWT: ed25519-nkey signature by `signer` over header and claims. */
function natsJwt(signer: ReturnType<typeof nkeys.createAccount>, subject: string, name: string, nats: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }))
  const claims = b64url(JSON.stringify({ jti: randomUUID().replaceAll('-', '').toUpperCase(), iat: Math.floor(Date.now() / 1000), iss: signer.getPublicKey(), name, sub: subject, nats: { version: 2, ...nats } }))
  return `${header}.${claims}.${b64url(signer.sign(new TextEncoder().encode(`${header}.${claims}`)))}`
}

export function operatorMode(): OperatorMode {
  const operator = nkeys.createOperator()
  const account = nkeys.createAccount()
  const stranger = nkeys.createAccount()
  const limits = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 }
  const operatorJwt = natsJwt(operator, operator.getPublicKey(), 'weir-test-operator', { type: 'operator' })
  const accountJwt = natsJwt(operator, account.getPublicKey(), 'weir-test', { type: 'account', limits })
  return {
    raw: `operator: "${operatorJwt}"\nresolver: MEMORY\nresolver_preload: { ${account.getPublicKey()}: "${accountJwt}" }`,
    userCreds(dir, name, permissions, options = {}) {
      const user = nkeys.createUser()
      const jwt = natsJwt(options.untrusted === true ? stranger : account, user.getPublicKey(), name, {
        type: 'user', pub: { allow: permissions.publish }, sub: { allow: permissions.subscribe }, subs: -1, data: -1, payload: -1,
      })
      const file = join(dir, `${name}.creds`)
      writeFileSync(file, `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(user.getSeed())}\n------END USER NKEY SEED------\n`)
      return file
    },
  }
}
