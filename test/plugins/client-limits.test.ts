import { connect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { createRoute, rawStatus, startGateway, startUpstream } from '../helper.js'

/**
 * Client-side limits (docs/routing.md "Refused before routing"): only real sockets see
 * Node's parser and timers, so every case here talks raw TCP to a listening gateway.
 */

const SMALL_LIMITS = { HEADERS_TIMEOUT_MS: '500', REQUEST_TIMEOUT_MS: '1000', KEEP_ALIVE_TIMEOUT_MS: '600' }

interface Conversation {
  socket: Socket
  /** Resolves with everything received and the ms from `startedAt` until the server closed. */
  closed: Promise<{ text: string, afterMs: number }>
  startedAt: number
}

function open (port: number): Promise<Conversation> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('error', reject)
    socket.once('connect', () => {
      const startedAt = Date.now()
      const closed = new Promise<{ text: string, afterMs: number }>((resolve) => {
        socket.on('error', () => {})
        socket.once('close', () => resolve({ text: Buffer.concat(chunks).toString('latin1'), afterMs: Date.now() - startedAt }))
      })
      resolve({ socket, closed, startedAt })
    })
  })
}

/** Writes `pieces` one every `everyMs` while the socket is open. */
function drip (socket: Socket, pieces: string[], everyMs: number): void {
  let next = 0
  const timer = setInterval(() => {
    if (socket.destroyed || next >= pieces.length) return clearInterval(timer)
    socket.write(pieces[next++])
  }, everyMs)
  socket.once('close', () => clearInterval(timer))
}

function header (text: string, name: string): string | undefined {
  const head = text.slice(0, text.indexOf('\r\n\r\n'))
  const line = head.split('\r\n').find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
  return line?.slice(name.length + 1).trim()
}

function jsonBody (text: string): Record<string, unknown> {
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))
}

function assertGatewayError (t: Test, text: string, statusCode: number, error: string): void {
  t.equal(rawStatus(text), statusCode)
  t.equal(header(text, 'connection'), 'close')
  t.equal(header(text, 'content-type'), 'application/json; charset=utf-8')
  const body = jsonBody(text)
  t.same(Object.keys(body).sort(), ['error', 'message', 'requestId', 'statusCode'])
  t.equal(body.statusCode, statusCode)
  t.equal(body.error, error)
  t.match(body.requestId, /^[0-9a-f-]{36}$/)
  t.equal(header(text, 'x-request-id'), body.requestId)
}

t.test('the server applies the documented defaults (README) for client timeouts and header size', async (t) => {
  const { app } = await startGateway(t)
  t.equal(app.server.headersTimeout, 10_000)
  t.equal(app.server.requestTimeout, 60_000)
  t.equal(app.server.keepAliveTimeout, 72_000)
  t.equal((app.server as unknown as { maxHeaderSize: number }).maxHeaderSize, 16_384)
})

t.test('slowloris: headers dripped past HEADERS_TIMEOUT_MS get 408 JSON and the connection closes', async (t) => {
  const { port } = await startGateway(t, { env: SMALL_LIMITS })
  const conversation = await open(port)
  conversation.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n')
  drip(conversation.socket, Array.from({ length: 100 }, (_, i) => `X-Drip-${i}: ${i}\r\n`), 100)
  const { text, afterMs } = await conversation.closed
  assertGatewayError(t, text, 408, 'Request Timeout')
  // Node checks every connectionsCheckingInterval (here 500 ms) whether the 500 ms have passed;
  // the upper bound leaves room for a machine busy with the rest of the suite (default is 10 s).
  t.ok(afterMs >= 450 && afterMs < 3000, `closed after ${afterMs} ms`)
})

t.test('a connection that never sends a byte is closed after HEADERS_TIMEOUT_MS', async (t) => {
  const { port } = await startGateway(t, { env: SMALL_LIMITS })
  const conversation = await open(port)
  const { afterMs } = await conversation.closed
  t.ok(afterMs >= 450 && afterMs < 3000, `closed after ${afterMs} ms`)
})

t.test('slow body (RUDY): a proxied body dripped past REQUEST_TIMEOUT_MS gets 408 JSON and the connection closes', async (t) => {
  const upstream = await startUpstream(t)
  const { app, port } = await startGateway(t, { env: SMALL_LIMITS })
  await createRoute(app, { name: 'upload', path: '/upload', targets: [{ url: upstream.url, weight: 1 }] })
  const conversation = await open(port)
  conversation.socket.write('POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n')
  drip(conversation.socket, Array.from({ length: 1000 }, () => 'x'), 50)
  const { text, afterMs } = await conversation.closed
  assertGatewayError(t, text, 408, 'Request Timeout')
  t.ok(afterMs >= 950 && afterMs < 4000, `closed after ${afterMs} ms`)
})

t.test('a slow body to an admin endpoint is cut the same way', async (t) => {
  const { port } = await startGateway(t, { env: SMALL_LIMITS })
  const conversation = await open(port)
  conversation.socket.write('POST /admin/routes HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{')
  drip(conversation.socket, Array.from({ length: 500 }, () => ' '), 50)
  const { text, afterMs } = await conversation.closed
  // The 401 of the admin hook may come first; either way the socket must not stay open.
  t.ok([401, 408].includes(rawStatus(text)), `answered ${rawStatus(text)}`)
  t.ok(afterMs < 4000, `closed after ${afterMs} ms`)
})

t.test('an idle kept-alive connection closes after KEEP_ALIVE_TIMEOUT_MS', async (t) => {
  const { port } = await startGateway(t, { env: SMALL_LIMITS })
  const conversation = await open(port)
  conversation.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n')
  const { text, afterMs } = await conversation.closed
  t.equal(rawStatus(text), 200)
  // Node 20 keeps the socket ~1 s past the advertised timeout so the client closes first.
  t.ok(afterMs >= 550 && afterMs < 4000, `closed after ${afterMs} ms`)
})

t.test('headers over 16 KiB get 431 JSON and the connection closes; just under passes', async (t) => {
  const { port } = await startGateway(t)
  const big = await open(port)
  big.socket.write(`GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(16 * 1024)}\r\n\r\n`)
  const { text } = await big.closed
  assertGatewayError(t, text, 431, 'Request Header Fields Too Large')

  const fits = await open(port)
  fits.socket.end(`GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: ${'a'.repeat(15 * 1024)}\r\n\r\n`)
  const answer = await fits.closed
  t.equal(rawStatus(answer.text), 200)
})

t.test('malformed HTTP gets 400 JSON and the connection closes', async (t) => {
  const { port } = await startGateway(t)
  const conversation = await open(port)
  conversation.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n')
  const { text } = await conversation.closed
  assertGatewayError(t, text, 400, 'Bad Request')
})
