// Exits 0 when the Kafka broker at HOST:PORT serves: it answers a Metadata request (v4)
// listing at least one live broker and a controller. Used by scripts/services.sh to wait
// for a broker; plain Node, no packages, so it works before `npm ci` has run.
//
//   node scripts/kafka/metadata-probe.mjs 127.0.0.1:9092
import { connect } from 'node:net'

const [host, portText] = (process.argv[2] ?? '127.0.0.1:9092').split(':')
const timeoutMs = 3000

/** Metadata v4 with request header v1: all topics (null array), no auto-creation. */
function metadataRequest() {
  const clientId = Buffer.from('weir-services-probe')
  const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length + 4 + 1)
  let o = 0
  o = body.writeInt16BE(3, o) // api key: Metadata
  o = body.writeInt16BE(4, o) // api version
  o = body.writeInt32BE(1, o) // correlation id
  o = body.writeInt16BE(clientId.length, o)
  o += clientId.copy(body, o)
  o = body.writeInt32BE(-1, o) // topics: null = all
  body.writeInt8(0, o) // allow_auto_topic_creation
  const size = Buffer.alloc(4)
  size.writeInt32BE(body.length)
  return Buffer.concat([size, body])
}

/** Reads the broker count and controller id from a Metadata v4 response body. */
function parseMetadata(buf) {
  let o = 4 // correlation id
  o += 4 // throttle_time_ms
  const brokers = buf.readInt32BE(o)
  o += 4
  for (let i = 0; i < brokers; i++) {
    o += 4 // node_id
    o += 2 + buf.readInt16BE(o) // host
    o += 4 // port
    const rack = buf.readInt16BE(o)
    o += 2 + Math.max(rack, 0)
  }
  const clusterId = buf.readInt16BE(o)
  o += 2 + Math.max(clusterId, 0)
  return { brokers, controllerId: buf.readInt32BE(o) }
}

const socket = connect({ host, port: Number(portText) })
const fail = (why) => {
  console.error(`kafka at ${host}:${portText} does not serve yet: ${why}`)
  socket.destroy()
  process.exit(1)
}
socket.setTimeout(timeoutMs, () => fail('no answer'))
socket.once('error', (err) => fail(err.message))
socket.once('connect', () => socket.write(metadataRequest()))
let received = Buffer.alloc(0)
socket.on('data', (chunk) => {
  received = Buffer.concat([received, chunk])
  if (received.length < 4 || received.length < 4 + received.readInt32BE(0)) return
  const { brokers, controllerId } = parseMetadata(received.subarray(4))
  if (brokers < 1 || controllerId < 0) fail(`${brokers} live brokers, controller ${controllerId}`)
  socket.destroy()
  process.exit(0)
})
