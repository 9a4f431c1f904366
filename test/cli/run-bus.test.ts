/**
 * `weir run --bus nats://…`: the run is coordinated over NATS and can be watched there;
 * bad bus input is refused before anything is touched, an unreachable server fails clearly.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { requireService } from '../support/services.ts'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const BIN = join(ROOT, 'bin/weir.js')
const nats = await requireService('nats')
const temps: string[] = []
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })))
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'weir-cli-bus-'))
  temps.push(d)
  return d
}

function weir(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env }
  delete env.WEIR_LOG_LEVEL
  delete env.WEIR_BUS
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  return new Promise((res, rej) => {
    child.on('error', rej)
    child.on('close', (code) => res({ code, stdout, stderr }))
  })
}

describe('weir run --bus', () => {
  it('refuses a bad bus URL, or --cluster without --bus, before touching the data dir', async () => {
    const dir = tempDir()
    const bad = await weir(['run', 'examples/wordcount.ts', '--bus', 'localhost:4222', '--data-dir', join(dir, 'data')])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--bus')
    const lonely = await weir(['run', 'examples/wordcount.ts', '--cluster', 'prod', '--data-dir', join(dir, 'data')])
    expect(lonely.code).toBe(2)
    expect(lonely.stderr).toContain('--cluster')
    expect(existsSync(join(dir, 'data'))).toBe(false)
  })

  it('fails with WEIR_BUS_UNAVAILABLE naming the server when NATS does not answer', async () => {
    const dir = tempDir()
    const r = await weir(['run', 'examples/wordcount.ts', '--bus', 'nats://127.0.0.1:1', '--data-dir', join(dir, 'data')])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/WEIR_BUS_UNAVAILABLE[\s\S]*nats:\/\/127\.0\.0\.1:1/)
  })

  it.skipIf(!nats.available)('runs coordinated over NATS, watched by an observer there', async () => {
    const dir = tempDir()
    const cluster = `c${randomUUID().slice(0, 8)}`
    const observer = await NatsBus.connect({ servers: [nats.url] })
    const kinds = new Set<string>()
    observer.subscribe(`weir.${cluster}.wordcount.>`, (_m, subject) => kinds.add(subject.split('.').pop()!))
    try {
      const r = await weir(['run', 'examples/wordcount.ts', '--bus', nats.url, '--cluster', cluster, '--data-dir', join(dir, 'data'), '--param', 'lines=300', '--param', `out=${dir}/out/c-{partition}.jsonl`, '-q'])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/outcome:\s+finished/)
    } finally {
      await observer.close()
    }
    expect([...kinds].sort()).toEqual(expect.arrayContaining(['actor-finished', 'assignment', 'epoch', 'epoch-ack', 'worker-hello']))
  }, 60_000)
})
