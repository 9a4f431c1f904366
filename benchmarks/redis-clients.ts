/**
 * Which Redis client the Redis sink uses: ioredis against node-redis (`redis`), on what the
 * sink does (one EVALSHA at a time, each applying a batch of HSETs in a Lua script, as
 * processors/sinks/redis-sink.ts writes a batch with its progress) and on pipelined single
 * commands. The ceiling is the same EVALSHA sent as raw RESP bytes over a socket (no client
 * at all). Each figure is the best of `--rounds` rounds. Prints one JSON line on stdout.
 *
 * @example
 * node --import tsx benchmarks/redis-clients.ts
 * node --import tsx benchmarks/redis-clients.ts --url redis://127.0.0.1:6379 --calls 400 --rows 500
 */
import { connect, type Socket } from 'node:net'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { startRunInfo } from './lib/run-info.ts'
import { progress, round } from './lib/stats.ts'

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.WEIR_REDIS_URL ?? 'redis://127.0.0.1:6379' },
    calls: { type: 'string', default: '400' },
    rows: { type: 'string', default: '500' },
    pipelined: { type: 'string', default: '50000' },
    rounds: { type: 'string', default: '3' },
  },
})
const URL_ = args.url
const CALLS = Number(args.calls)
const ROWS = Number(args.rows)
const PIPELINED = Number(args.pipelined)
const ROUNDS = Number(args.rounds)
const info = startRunInfo(['processors', 'benchmarks'])
const PREFIX = `weir:bench:redis-clients:${process.pid}`

/** Applies KEYS[i] ← (ARGV[2i-1], ARGV[2i]) with pcall, as the sink applies its commands, and returns the count. */
const SCRIPT = `local n = 0
for i = 1, #KEYS do
  local r = redis.pcall('HSET', KEYS[i], ARGV[2 * i - 1], ARGV[2 * i])
  if type(r) == 'number' then n = n + 1 end
end
return n`

function batch(call: number): { keys: string[]; argv: string[] } {
  const keys: string[] = []
  const argv: string[] = []
  for (let i = 0; i < ROWS; i++) {
    keys.push(`${PREFIX}:h${(call * ROWS + i) % 10_000}`)
    argv.push('count', String(call * ROWS + i))
  }
  return { keys, argv }
}
const batches = Array.from({ length: CALLS }, (_, c) => batch(c))

interface Figures { evalsha_calls_per_s: number; evalsha_rows_per_s: number; pipelined_hset_per_s: number }

async function best(name: string, once: () => Promise<{ evalMs: number; pipeMs: number }>): Promise<Figures> {
  let evalMs = Infinity
  let pipeMs = Infinity
  for (let r = 0; r < ROUNDS; r++) {
    const t = await once()
    evalMs = Math.min(evalMs, t.evalMs)
    pipeMs = Math.min(pipeMs, t.pipeMs)
    progress(`${name} round ${r + 1}: evalsha ${Math.round(t.evalMs)} ms, pipelined ${Math.round(t.pipeMs)} ms`)
  }
  return { evalsha_calls_per_s: round((CALLS * 1000) / evalMs), evalsha_rows_per_s: round((CALLS * ROWS * 1000) / evalMs), pipelined_hset_per_s: round((PIPELINED * 1000) / pipeMs) }
}

async function ioredis(): Promise<Figures> {
  const client = new Redis(URL_, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await client.connect()
  const sha = (await client.script('LOAD', SCRIPT)) as string
  try {
    return await best('ioredis', async () => {
      let t = performance.now()
      for (const b of batches) await client.evalsha(sha, b.keys.length, ...b.keys, ...b.argv)
      const evalMs = performance.now() - t
      t = performance.now()
      const p = client.pipeline()
      for (let i = 0; i < PIPELINED; i++) p.hset(`${PREFIX}:p${i % 10_000}`, 'count', String(i))
      await p.exec()
      return { evalMs, pipeMs: performance.now() - t }
    })
  } finally {
    client.disconnect()
  }
}

async function nodeRedis(): Promise<Figures> {
  const client = createClient({ url: URL_ })
  await client.connect()
  const sha = await client.scriptLoad(SCRIPT)
  try {
    return await best('redis', async () => {
      let t = performance.now()
      for (const b of batches) await client.evalSha(sha, { keys: b.keys, arguments: b.argv })
      const evalMs = performance.now() - t
      t = performance.now()
      // node-redis pipelines the commands issued in one tick on its own.
      const replies: Promise<unknown>[] = []
      for (let i = 0; i < PIPELINED; i++) replies.push(client.hSet(`${PREFIX}:p${i % 10_000}`, 'count', String(i)))
      await Promise.all(replies)
      return { evalMs, pipeMs: performance.now() - t }
    })
  } finally {
    client.destroy()
  }
}

/** RESP bytes of a command. */
function resp(parts: readonly string[]): Buffer {
  const chunks = [`*${parts.length}\r\n`]
  for (const p of parts) chunks.push(`$${Buffer.byteLength(p)}\r\n${p}\r\n`)
  return Buffer.from(chunks.join(''))
}

/** The ceiling: the same traffic over a raw socket, requests encoded up front, replies counted by line ends (every reply here is one `:n\r\n` line). */
async function rawSocket(): Promise<Figures> {
  const u = new URL(URL_)
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port || 6379) }, () => resolve(s))
    s.once('error', reject)
  })
  socket.setNoDelay(true)
  let lines = 0
  let waiting: { until: number; resolve: () => void } | undefined
  socket.on('data', (d: Buffer) => {
    for (const b of d) if (b === 0x0a) lines++
    if (waiting !== undefined && lines >= waiting.until) {
      const w = waiting
      waiting = undefined
      w.resolve()
    }
  })
  const replies = (n: number): Promise<void> => new Promise((resolve) => {
    if (lines >= n) resolve()
    else waiting = { until: n, resolve }
  })
  const send = async (buf: Buffer, until: number): Promise<void> => {
    socket.write(buf)
    await replies(until)
  }
  const loader = new Redis(URL_)
  const sha = (await loader.script('LOAD', SCRIPT)) as string
  loader.disconnect()
  const evals = batches.map((b) => resp(['EVALSHA', sha, String(b.keys.length), ...b.keys, ...b.argv]))
  const pipelined = Buffer.concat(Array.from({ length: PIPELINED }, (_, i) => resp(['HSET', `${PREFIX}:p${i % 10_000}`, 'count', String(i)])))
  try {
    return await best('raw socket', async () => {
      lines = 0
      let t = performance.now()
      for (let i = 0; i < evals.length; i++) await send(evals[i]!, i + 1)
      const evalMs = performance.now() - t
      lines = 0
      t = performance.now()
      await send(pipelined, PIPELINED)
      return { evalMs, pipeMs: performance.now() - t }
    })
  } finally {
    socket.destroy()
  }
}

async function cleanup(): Promise<void> {
  const c = new Redis(URL_)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await c.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await c.del(...keys)
    } while (cursor !== '0')
  } finally {
    c.disconnect()
  }
}

const ceiling = await rawSocket()
const io = await ioredis()
const nr = await nodeRedis()
await cleanup()
process.stdout.write(JSON.stringify({
  benchmark: 'redis-clients',
  url: URL_,
  calls: CALLS,
  rows_per_call: ROWS,
  pipelined_commands: PIPELINED,
  rounds: ROUNDS,
  ceiling_raw_socket: ceiling,
  ioredis: io,
  redis: nr,
  ioredis_evalsha_share_of_ceiling: round(io.evalsha_rows_per_s / ceiling.evalsha_rows_per_s),
  redis_evalsha_share_of_ceiling: round(nr.evalsha_rows_per_s / ceiling.evalsha_rows_per_s),
  ...info.finish(),
}) + '\n')
