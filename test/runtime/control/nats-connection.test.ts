/**
 * How a process's NATS credentials and TLS are resolved (runtime/control/nats/nats-connection.ts):
 * from the URL, options (files) and WEIR_NATS_* variables; every bad combination or file is
 * refused at start naming the field, and no secret ever reaches a message.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nkeys } from '@nats-io/transport-node'
import { describe, expect, it } from 'vitest'
import { connectNats, describeCredentials, natsConnectionOptions, redactNatsUrl, resolveNatsTarget } from '../../../runtime/control/nats/nats-connection.ts'
import { freePort, tempDirs } from '../../support/weir-cli.ts'

const tempDir = tempDirs('weir-nats-connection-')

function file(dir: string, name: string, content: string): string {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}

describe('resolving NATS credentials and TLS', () => {
  it('takes user/password or a token out of the URL, percent-decoded, and logs the server without them', () => {
    const t = resolveNatsTarget({ url: 'nats://weir-worker:p%40ss%3Aword@nats.example:4222' })
    expect(t.servers).toEqual(['nats://nats.example:4222'])
    expect(t.credentials).toMatchObject({ kind: 'user', user: 'weir-worker', password: 'p@ss:word', from: '--bus' })
    expect(t.tls).toBeUndefined()
    expect(describeCredentials(t.credentials)).toBe("user 'weir-worker' (--bus)")
    expect(resolveNatsTarget({ url: 'nats://s3cr3t@127.0.0.1:4222' }).credentials).toMatchObject({ kind: 'token', token: 's3cr3t' })
    expect(redactNatsUrl('nats://weir-worker:secret@nats:4222')).toBe('nats://***@nats:4222')
    expect(redactNatsUrl('nats://nats:4222')).toBe('nats://nats:4222')
  })

  it('takes credentials from the environment, an option file winning over its variable', () => {
    const dir = tempDir()
    const env = { WEIR_NATS_USER: 'weir-monitor', WEIR_NATS_PASSWORD: 'from-env' }
    expect(resolveNatsTarget({ url: 'nats://127.0.0.1:4222', env }).credentials).toMatchObject({ kind: 'user', user: 'weir-monitor', password: 'from-env', from: 'WEIR_NATS_USER' })
    const password = file(dir, 'password', 'from-file\n')
    expect(resolveNatsTarget({ url: 'nats://127.0.0.1:4222', env, options: { passwordFile: password } }).credentials).toMatchObject({ password: 'from-file' })
    const token = file(dir, 'token', '  tok-from-file\n')
    expect(resolveNatsTarget({ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_TOKEN: 'tok-env' }, options: { tokenFile: token } }).credentials).toMatchObject({ kind: 'token', token: 'tok-from-file', from: '--nats-token-file' })
    // Empty variables count as unset, as WEIR_MONITOR_TOKEN does.
    expect(resolveNatsTarget({ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_TOKEN: '' } }).credentials).toEqual({ kind: 'none' })
  })

  it('reads and checks an nkey seed file and a creds file at start', () => {
    const dir = tempDir()
    const user = nkeys.createUser()
    const seedFile = file(dir, 'worker.nk', `${new TextDecoder().decode(user.getSeed())}\n`)
    const t = resolveNatsTarget({ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_NKEY: seedFile } })
    expect(t.credentials).toMatchObject({ kind: 'nkey', file: seedFile, from: 'WEIR_NATS_NKEY' })
    expect(typeof natsConnectionOptions(t).authenticator).toBe('function')
    expect(() => resolveNatsTarget({ url: 'nats://127.0.0.1:4222', options: { nkey: file(dir, 'bad.nk', 'SUNOTASEED') } })).toThrow(/^--nats-nkey: .*bad\.nk does not hold an nkey user seed/)
    expect(() => resolveNatsTarget({ url: 'nats://127.0.0.1:4222', options: { creds: file(dir, 'bad.creds', 'not a creds file') } })).toThrow(/^--nats-creds: .*bad\.creds is not a NATS credentials file/)
    const creds = file(dir, 'ok.creds', `-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5In0.e30.sig\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(user.getSeed())}\n------END USER NKEY SEED------\n`)
    expect(resolveNatsTarget({ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_CREDS: creds } }).credentials).toMatchObject({ kind: 'creds', file: creds })
  })

  it('requires TLS for tls:// or a CA, and reads every TLS file at start', () => {
    const dir = tempDir()
    const ca = file(dir, 'ca.pem', 'x')
    const cert = file(dir, 'cert.pem', 'x')
    const key = file(dir, 'key.pem', 'x')
    expect(resolveNatsTarget({ url: 'tls://127.0.0.1:4222' }).tls).toEqual({})
    expect(resolveNatsTarget({ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_CA: ca, WEIR_NATS_CERT: cert, WEIR_NATS_KEY: key } }).tls).toEqual({ caFile: ca, certFile: cert, keyFile: key })
    expect(natsConnectionOptions(resolveNatsTarget({ url: 'tls://127.0.0.1:4222', options: { ca } })).tls).toEqual({ caFile: ca })
  })

  it('refuses every bad combination or file naming the field, and never shows a secret', () => {
    const dir = tempDir()
    const missing = join(dir, 'nope')
    const cases: Array<[Parameters<typeof resolveNatsTarget>[0], RegExp]> = [
      [{ url: 'http://127.0.0.1:4222' }, /^--bus: /],
      [{ url: 'nats://user:hunter2@127.0.0.1', urlField: 'WEIR_BUS' }, /^WEIR_BUS: 'nats:\/\/\*\*\*@127\.0\.0\.1' is not/],
      [{ url: 'nats://127.0.0.1:99999' }, /^--bus: port 99999/],
      [{ url: 'nats://user:hunter2@127.0.0.1:4222', env: { WEIR_NATS_TOKEN: 't' } }, /^WEIR_NATS_TOKEN: credentials are given both in --bus and in WEIR_NATS_TOKEN/],
      [{ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_TOKEN: 't', WEIR_NATS_CREDS: 'x' } }, /^WEIR_NATS_CREDS: WEIR_NATS_TOKEN and WEIR_NATS_CREDS are two kinds/],
      [{ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_USER: 'u' } }, /^WEIR_NATS_PASSWORD: user 'u' \(WEIR_NATS_USER\) needs a password/],
      [{ url: 'nats://127.0.0.1:4222', options: { user: 'u' } }, /^--nats-password-file: /],
      [{ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_PASSWORD: 'hunter2' } }, /^WEIR_NATS_USER: a password \(WEIR_NATS_PASSWORD\) needs a user/],
      [{ url: 'nats://127.0.0.1:4222', options: { tokenFile: missing } }, /^--nats-token-file: cannot read .*nope: ENOENT/],
      [{ url: 'nats://127.0.0.1:4222', options: { tokenFile: file(dir, 'empty', '\n') } }, /^--nats-token-file: .*empty is empty/],
      [{ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_TOKEN: 'two words' } }, /^WEIR_NATS_TOKEN: the token must not contain whitespace/],
      [{ url: 'nats://127.0.0.1:4222', options: { cert: file(dir, 'c', 'x') } }, /^--nats-key: a client certificate needs its key/],
      [{ url: 'nats://127.0.0.1:4222', env: { WEIR_NATS_KEY: file(dir, 'k', 'x') } }, /^WEIR_NATS_CERT: /],
      [{ url: 'tls://127.0.0.1:4222', env: { WEIR_NATS_CA: missing } }, /^WEIR_NATS_CA: cannot read/],
      [{ url: 'nats://:@127.0.0.1:4222' }, /^--bus: the user before @ is empty/],
      [{ url: 'nats://127.0.0.1:4222', options: { user: '' } }, /^--nats-user: must not be empty/],
    ]
    for (const [sources, message] of cases) {
      let thrown: unknown
      try {
        resolveNatsTarget(sources)
      } catch (err) {
        thrown = err
      }
      expect(thrown, JSON.stringify(sources)).toMatchObject({ code: 'WEIR_CONFIG_INVALID' })
      expect((thrown as Error).message, JSON.stringify(sources)).toMatch(message)
      expect((thrown as Error).message).not.toContain('hunter2')
    }
  })
})

describe('connecting to a NATS server that is not there', () => {
  it('names the server and says what to check', async () => {
    const url = `nats://127.0.0.1:${await freePort()}`
    const err = await connectNats(resolveNatsTarget({ url }), { name: 'weir-test', timeoutMs: 2000 }).then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'WEIR_BUS_UNAVAILABLE', retriable: true })
    expect((err as Error).message).toMatch(new RegExp(`^cannot connect to NATS at ${url.replace(/[./]/g, '\\$&')}: .+: is nats-server running there, and reachable from this host\\? Check the URL in --bus \\(or WEIR_BUS\\); for a local server, scripts/services.sh up`))
  })
})
