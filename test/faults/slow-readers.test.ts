import { connect, type Socket } from 'node:net'
import t from 'tap'
import { spawnGateway, startUpstream, type TestContext } from '../helper.js'
import { addRoute, auditRows, countBy, countConnections, settle, sleep, targetStatus, within } from './drill.js'

/**
 * docs/upstreams.md "Slow readers": a client that reads nothing of a large answer must
 * not hold an upstream connection (with unread data) or an in-flight count for good.
 */

const CHUNK = Buffer.alloc(64 * 1024, 97)
/**
 * Answers GET /big/<MiB> with that many MiB, written as the gateway takes them. Larger than
 * every socket buffer on the way (Linux may let a receive buffer grow to 32 MiB), so a client
 * that reads nothing really holds the answer up.
 */
const DEFAULT_MIB = 256

async function bigUpstream (t: TestContext): Promise<{ url: string, connections: ReturnType<typeof countConnections> }> {
  const upstream = await startUpstream(t, (req, res) => {
    const mib = Number(/\/(\d+)$/.exec(req.url ?? '')?.[1] ?? DEFAULT_MIB)
    let left = mib * 16
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left * CHUNK.length })
    const more = (): void => {
      while (left > 0) {
        left--
        if (left === 0) return void res.end(CHUNK)
        if (!res.write(CHUNK)) return void res.once('drain', more)
      }
    }
    more()
  })
  // The upstream's own socket errors (the gateway resets it) are expected here.
  upstream.server.on('connection', (socket: Socket) => socket.on('error', () => {}))
  return { url: upstream.url, connections: countConnections(upstream) }
}

/** A client that sends `requests` GETs at once (pipelined) and never reads a byte. */
function nonReader (port: number, requests: number, path = '/big/x'): { socket: Socket, closed: Promise<void> } {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.pause()
  socket.write(`GET ${path} HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n`.repeat(requests))
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve())) }
}

t.test('a client that pipelines large downloads, reads nothing and goes away releases every upstream connection at once', async (t) => {
  const upstream = await bigUpstream(t)
  // The send timeout is far away: what frees the upstream here is the client leaving.
  const gateway = await spawnGateway(t, { SEND_TIMEOUT_MS: '60000', SHUTDOWN_GRACE_MS: '5000' })
  const routeId = await addRoute(gateway, 'big', '/big', upstream.url)

  const client = nonReader(gateway.port, 3)
  const busy = await settle(() => targetStatus(gateway, upstream.url), (state) => state.inFlight === 3, 5000)
  t.equal(busy.inFlight, 3, 'three downloads under way')
  await sleep(500)
  client.socket.destroy()

  const target = await settle(() => targetStatus(gateway, upstream.url), (state) => state.inFlight === 0, 3000)
  t.equal(target.inFlight, 0, 'in flight back to 0')
  t.equal(target.consecutiveFailures, 0, 'a client going away is not an upstream failure')
  t.equal(target.healthy, true)
  // The connections that carried the downloads are closed, never reused with unread data.
  t.equal(await settle(() => upstream.connections.withRequest(), (n) => n === 0, 3000), 0, 'upstream connections released')

  const rows = await settle(() => auditRows(gateway, routeId), (found) => found.length === 3, 3000)
  t.same(countBy(rows, (row) => `${row.status} ${row.outcome} ${row.detail}`), {
    '200 proxied client closed the connection before the response was complete': 3
  })

  const signalledAt = Date.now()
  t.equal(await gateway.stop(), 0, 'SIGTERM exits 0')
  t.ok(Date.now() - signalledAt < 5000, `within the grace period (${Date.now() - signalledAt} ms)`)
})

t.test('clients that read nothing are cut off after SEND_TIMEOUT_MS; the upstream requests behind them are aborted', async (t) => {
  const upstream = await bigUpstream(t)
  const gateway = await spawnGateway(t, { SEND_TIMEOUT_MS: '1000', SHUTDOWN_GRACE_MS: '5000' })
  const routeId = await addRoute(gateway, 'big', '/big', upstream.url)

  // Ten connections of one request and one of three pipelined: 13 downloads nobody reads.
  const clients = [...Array.from({ length: 10 }, () => nonReader(gateway.port, 1)), nonReader(gateway.port, 3)]
  t.teardown(() => { for (const { socket } of clients) socket.destroy() })
  const startedAt = Date.now()
  await settle(() => targetStatus(gateway, upstream.url), (state) => state.inFlight === 13, 5000)
  const target = await settle(() => targetStatus(gateway, upstream.url), (state) => state.inFlight === 0, 8000)
  const cutAfter = Date.now() - startedAt
  t.equal(target.inFlight, 0, 'in flight back to 0')
  t.ok(cutAfter >= 1000, `cut after the send timeout (${cutAfter} ms)`)
  t.equal(target.consecutiveFailures, 0, 'a slow reader cut off is not an upstream failure')
  t.equal(target.healthy, true)
  t.equal(await settle(() => upstream.connections.withRequest(), (n) => n === 0, 3000), 0, 'upstream connections released')

  // The gateway closed every client connection: reading now finds the end of a truncated answer.
  let truncated = 0
  for (const { socket } of clients) {
    socket.on('data', (chunk: Buffer) => { truncated += chunk.length })
    socket.resume()
  }
  await within(Promise.all(clients.map(({ closed }) => closed)), 10_000, 'client connections closed by the gateway')
  t.ok(truncated < 13 * DEFAULT_MIB * 1024 * 1024, `the answers were cut short (${truncated} bytes read)`)

  const rows = await settle(() => auditRows(gateway, routeId), (found) => found.length === 13, 3000)
  // The two answers queued behind the pipelined one that was cut end with its connection.
  t.same(countBy(rows, (row) => `${row.status} ${row.outcome} ${row.detail}`), {
    '200 blocked client read nothing of the answer for 1000 ms': 11,
    '200 proxied client closed the connection before the response was complete': 2
  })

  // The route still works for a client that reads.
  const reader = nonReader(gateway.port, 1, '/big/8')
  let received = 0
  reader.socket.on('data', (chunk: Buffer) => { received += chunk.length })
  reader.socket.resume()
  await settle(() => received, (n) => n > 8 * 1024 * 1024, 10_000)
  t.ok(received > 8 * 1024 * 1024, `a reading client gets the whole answer (${received} bytes)`)
  reader.socket.destroy()

  const signalledAt = Date.now()
  t.equal(await gateway.stop(), 0, 'SIGTERM exits 0')
  t.ok(Date.now() - signalledAt < 5000, `within the grace period (${Date.now() - signalledAt} ms)`)
})

t.test('a slow client that keeps reading is not cut off', async (t) => {
  const upstream = await bigUpstream(t)
  const gateway = await spawnGateway(t, { SEND_TIMEOUT_MS: '1000' })
  const routeId = await addRoute(gateway, 'big', '/big', upstream.url)

  const client = nonReader(gateway.port, 1)
  t.teardown(() => client.socket.destroy())
  let received = 0
  client.socket.on('data', (chunk: Buffer) => { received += chunk.length })
  // A sip every 400 ms, for three times the send timeout.
  const sips = setInterval(() => {
    client.socket.resume()
    setImmediate(() => client.socket.pause())
  }, 400)
  await sleep(3000)
  clearInterval(sips)
  t.equal(client.socket.destroyed, false, 'still connected')
  t.ok(received > 0 && received < DEFAULT_MIB * 1024 * 1024, `part of the answer read (${received} bytes)`)
  t.equal((await targetStatus(gateway, upstream.url)).inFlight, 1)
  client.socket.destroy()
  const rows = await settle(() => auditRows(gateway, routeId), (found) => found.length === 1, 3000)
  t.equal(rows[0].outcome, 'proxied')
  t.equal(rows[0].detail, 'client closed the connection before the response was complete')
})
