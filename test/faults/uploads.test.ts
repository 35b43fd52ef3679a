import { connect, type Socket } from 'node:net'
import t from 'tap'
import { httpRequest, spawnGateway, startUpstream } from '../helper.js'
import { addRoute, auditRows, countBy, countConnections, settle, sleep, targetStatus, within } from './drill.js'

/**
 * Regression: uploads past the pool's 128 connections wait in undici's queue; a client that
 * aborted or was cut (408) while its upload waited there crashed the process with an unhandled
 * 'error' on the attempt's body stream.
 */

const STALLED = 140
const DRIPPING = 60
const CLOSED_EARLY = 20

/** Sends the head and `sent` bytes of a `declared`-byte body, then nothing more (or drips). */
function upload (port: number, declared: number, sent: number): Socket {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.setNoDelay(true)
  socket.write(`POST /uploads/x HTTP/1.1\r\nHost: gatehouse.test\r\nContent-Type: application/octet-stream\r\nContent-Length: ${declared}\r\n\r\n` + 'x'.repeat(sent))
  return socket
}

t.test('hundreds of aborted and dripping uploads while the upstream pool is saturated: the process stays up, serves others, audits each', async (t) => {
  // Reads the whole body before answering, so each unfinished upload holds its pool connection.
  const holding = await startUpstream(t, (req, res) => {
    req.resume()
    req.on('end', () => res.end('stored'))
  })
  const connections = countConnections(holding)
  const other = await startUpstream(t)
  const gateway = await spawnGateway(t, { HEADERS_TIMEOUT_MS: '2000', REQUEST_TIMEOUT_MS: '3000' })
  const uploadsRoute = await addRoute(gateway, 'uploads', '/uploads', holding.url)
  await addRoute(gateway, 'other', '/other', other.url)

  const clients: Socket[] = []
  for (let i = 0; i < STALLED; i++) clients.push(upload(gateway.port, 100, 10))
  const drippers: NodeJS.Timeout[] = []
  for (let i = 0; i < DRIPPING; i++) {
    const socket = upload(gateway.port, 1000, 1)
    clients.push(socket)
    drippers.push(setInterval(() => { if (!socket.destroyed) socket.write('x') }, 200))
  }
  t.teardown(() => {
    for (const timer of drippers) clearInterval(timer)
    for (const socket of clients) socket.destroy()
  })
  const answers = clients.map((socket) => new Promise<string>((resolve) => {
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
  }))

  // The pool is full: 128 uploads are at the upstream, the rest wait in undici's queue.
  const atUpstream = await settle(() => connections.withRequest(), (n) => n === 128, 10_000)
  t.equal(atUpstream, 128, 'the pool is saturated')
  await sleep(300)

  // Clients that go away: some of the last ones (queued behind the pool) and some at the upstream.
  const early = [...clients.slice(STALLED - CLOSED_EARLY / 2, STALLED), ...clients.slice(0, CLOSED_EARLY / 2)]
  for (const socket of early) socket.destroy()
  await sleep(300)
  const meanwhile = await httpRequest(`${gateway.url}/other/ping`)
  t.equal(meanwhile.statusCode, 200, 'other routes are served while the pool is saturated')

  // REQUEST_TIMEOUT_MS cuts every remaining upload (slowhttptest -B), queued ones included.
  const answered = await within(Promise.all(answers), 15_000, 'every upload answered or closed')
  t.equal(gateway.process.exitCode, null, 'the process is still running')
  t.same(gateway.stderr.filter((line) => /Unhandled|Error: aborted/.test(line)), [], 'no unhandled error')
  const statuses = countBy(answered.filter((_, i) => !early.includes(clients[i])),
    (text) => /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 'none')
  t.same(statuses, { 408: STALLED + DRIPPING - CLOSED_EARLY }, 'every upload cut by the request timeout got a 408')

  const after = await httpRequest(`${gateway.url}/other/ping`)
  t.equal(after.statusCode, 200)
  t.equal(after.json().url, '/other/ping')

  const target = await settle(() => targetStatus(gateway, holding.url), (state) => state.inFlight === 0, 5000)
  t.equal(target.inFlight, 0, 'nothing left in flight')
  t.equal(target.healthy, true, 'clients going away never count against the upstream')
  t.equal(target.consecutiveFailures, 0)
  const upstreamOpen = await settle(() => connections.withRequest(), (n) => n === 0, 5000)
  t.equal(upstreamOpen, 0, 'no upstream connection is left holding a half-sent upload')

  const rows = await settle(() => auditRows(gateway, uploadsRoute), (found) => found.length >= STALLED + DRIPPING, 5000)
  t.equal(rows.length, STALLED + DRIPPING, 'one audit row per upload')
  t.same(countBy(rows, (row) => `${row.status} ${row.outcome}`), {
    '408 blocked': STALLED + DRIPPING - CLOSED_EARLY,
    '499 proxied': CLOSED_EARLY
  })
  t.equal(rows.filter((row) => row.outcome === 'upstream_error').length, 0)

  t.equal(await gateway.stop(), 0, 'and it still shuts down cleanly')
})
