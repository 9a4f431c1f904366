/**
 * The ingest benchmark's ceiling: the HTTP server HttpIngestSource runs, doing the work it does
 * before a request is handed to an actor, and answering 200 at once, without weir. Same
 * fastify version and options, the same content-type parser (the body read in chunks
 * against a size limit), the same checks of the content type and Idempotency-Key, the same
 * parse of the events (server.ts's parseEvents, key field and all), the same partition pick
 * and sha256 fingerprint, and an answer body of the same shape. Run as a child: it sends
 * `{ port }` over IPC once listening, and answers `'count'` with the events it took.
 */
import { createHash } from 'node:crypto'
import Fastify from 'fastify'
import { partitionForKey } from '../../index.ts'
import { limitedBody, parseEvents, type StreamSettings } from '../../processors/sources/http-ingest/server.ts'

const LIMIT = 1 << 20
const settings: StreamSettings = {
  stream: 'events',
  partitions: Number(process.argv[2] ?? 2),
  maxBodyBytes: LIMIT,
  maxEventsPerRequest: 10_000,
  maxInFlightBytes: 64 << 20,
  key: { field: 'user' },
  timestampField: undefined,
  idempotencyKey: 'optional',
  retryAfterSeconds: 1,
  acceptEnd: true,
  peers: [],
}
const positions = new Array<number>(settings.partitions).fill(0)
let events = 0

const app = Fastify({ logger: false })
app.removeAllContentTypeParsers()
app.addContentTypeParser('*', limitedBody(() => ({ limit: LIMIT, message: 'too large' })))
app.post('/ingest/:stream', async (req, reply) => {
  const body = req.body as Buffer | undefined
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  const key = req.headers['idempotency-key']
  if (body === undefined || body.length === 0 || type !== 'application/json' || typeof key !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(key)) {
    return reply.code(400).type('application/json').send({ error: { code: 'BAD' } })
  }
  const parsed = parseEvents(body, false, settings, req.headers)
  if ('error' in parsed) return reply.code(400).type('application/json').send({ error: { code: 'BAD', message: parsed.error } })
  const partition = partitionForKey(Buffer.from(key), settings.partitions)
  const fingerprint = createHash('sha256').update(type).update('\n').update(body).digest('base64url')
  const from = positions[partition]!
  positions[partition] = from + parsed.events.length
  events += parsed.events.length
  return reply.code(200).type('application/json').send({ status: 'committed', events: parsed.events.length, partition, positions: { from, to: positions[partition] }, checkpoint: 0, epoch: 0, fingerprint: fingerprint.length })
})

await app.listen({ host: '127.0.0.1', port: 0 })
const address = app.server.address()
process.send!({ port: typeof address === 'object' && address !== null ? address.port : 0 })
process.on('message', (m) => {
  if (m === 'count') process.send!({ events })
  if (m === 'close') void app.close().then(() => process.exit(0))
})
