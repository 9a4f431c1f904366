/**
 * Which HTTP client the HTTP sink uses: requests/s of POSTing ~1 KiB JSON bodies with
 * 4 requests in flight to a local keep-alive server (in a child process, so the client
 * side is what is measured), for undici's Pool.request (the sink's choice), Node's
 * built-in fetch, and node:http with a keep-alive Agent. Each response body is read, each
 * request must get its 200 and the server must count every request (else exit 1). Best of
 * three rounds per client, interleaved so load changes hit all alike. Prints one JSON line.
 *
 * @example
 * npm run bench:http-clients
 * node --import tsx benchmarks/http-clients.ts --requests 50000 --concurrency 8
 */
import { spawn } from 'node:child_process'
import { Agent, request as httpRequest } from 'node:http'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { printResult, startRunInfo } from './lib/run-info.ts'
import { progress, round } from './lib/stats.ts'

const { values: args } = parseArgs({ options: { requests: { type: 'string', default: '20000' }, concurrency: { type: 'string', default: '4' }, 'body-bytes': { type: 'string', default: '1024' } } })
const REQUESTS = Number(args.requests)
const CONCURRENCY = Number(args.concurrency)
const BODY = JSON.stringify([{ pad: 'x'.repeat(Math.max(0, Number(args['body-bytes']) - 12)) }])
const info = startRunInfo(['processors'])

const SERVER = `
const http = require('node:http')
let n = 0
const s = http.createServer((req, res) => {
  req.on('data', () => {})
  req.on('end', () => { n++; res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}') })
})
s.keepAliveTimeout = 60000
s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'))
process.on('message', () => process.send(n))
`

const server = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
const port = await new Promise<number>((resolve) => server.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))))
const origin = `http://127.0.0.1:${port}`
const served = (): Promise<number> => new Promise((resolve) => {
  server.once('message', (n) => resolve(n as number))
  server.send('count')
})

type Send = () => Promise<number>

const pool = new Pool(origin, { connections: CONCURRENCY })
const undiciSend: Send = async () => {
  const res = await pool.request({ path: '/hook', method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'k' }, body: BODY })
  await res.body.text()
  return res.statusCode
}
const fetchSend: Send = async () => {
  const res = await fetch(`${origin}/hook`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'k' }, body: BODY })
  await res.text()
  return res.status
}
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
const nodeHttpSend: Send = () => new Promise((resolve, reject) => {
  const req = httpRequest(`${origin}/hook`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'idempotency-key': 'k', 'content-length': Buffer.byteLength(BODY) } }, (res) => {
    res.resume()
    res.on('end', () => resolve(res.statusCode ?? 0))
    res.on('error', reject)
  })
  req.on('error', reject)
  req.end(BODY)
})

const clients: Record<string, Send> = { undici_pool: undiciSend, fetch: fetchSend, node_http: nodeHttpSend }

async function run(send: Send, requests: number): Promise<number> {
  const before = await served()
  let next = 0
  let bad = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next++ < requests) if ((await send()) !== 200) bad++
  }))
  const perSecond = requests / ((performance.now() - started) / 1000)
  const got = (await served()) - before
  if (bad > 0 || got !== requests) {
    process.stderr.write(`wrong: ${bad} answers not 200, the server counted ${got} of ${requests} requests\n`)
    process.exit(1)
  }
  return perSecond
}

const best: Record<string, number> = {}
for (const send of Object.values(clients)) await run(send, Math.min(2000, REQUESTS))
for (let r = 0; r < 3; r++) {
  for (const [name, send] of Object.entries(clients)) {
    best[name] = Math.max(best[name] ?? 0, await run(send, REQUESTS))
    progress(`round ${r + 1} ${name}: ${Math.round(best[name]!).toLocaleString('en')} requests/s (best so far)`)
  }
}
await pool.close()
agent.destroy()
server.kill()
const result: Record<string, unknown> = { benchmark: 'http-clients', date: new Date().toISOString().slice(0, 10), requests: REQUESTS, concurrency: CONCURRENCY, body_bytes: Buffer.byteLength(BODY) }
for (const [name, v] of Object.entries(best)) {
  result[`${name}_per_s`] = Math.round(v)
  if (name !== 'undici_pool') result[`undici_pool_over_${name}`] = round(best.undici_pool! / v)
}
printResult(result, info)
