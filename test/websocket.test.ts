import { createServer, type IncomingMessage } from 'node:http'
import { once } from 'node:events'
import t from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import { ADMIN_TOKEN, adminHeaders, createApiKey, createConsumer, createRoute, httpRequest, rawHttp, rawStatus, spawnGateway, startGateway, type TestContext } from './helper.js'
import { startTlsGateway } from './tls-helper.js'

/** WebSocket proxying (docs/websocket.md). */

interface WsUpstream {
  url: string
  port: number
  /** Upgrade requests the upstream received. */
  upgrades: IncomingMessage[]
  /** Plain HTTP requests it received (a smuggled request would show here). */
  requests: string[]
  sockets: Set<WebSocket>
}

/** A ws echo server on an http server; plain requests are answered 200 and recorded. */
async function startWsUpstream (t: TestContext): Promise<WsUpstream> {
  const requests: string[] = []
  const upgrades: IncomingMessage[] = []
  const sockets = new Set<WebSocket>()
  const server = createServer((req, res) => {
    requests.push(`${req.method ?? ''} ${req.url ?? ''}`)
    res.end('plain answer')
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket, req) => {
    upgrades.push(req)
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('message', (data, binary) => { socket.send(data, { binary }) })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    for (const socket of sockets) socket.terminate()
    wss.close()
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  const port = (server.address() as { port: number }).port
  return { url: `http://127.0.0.1:${port}`, port, upgrades, requests, sockets }
}

async function openWs (t: TestContext, url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const socket = new WebSocket(url, options)
  t.teardown(() => { socket.terminate() })
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('error', reject)
    socket.once('unexpected-response', (_req, res) => reject(new Error(`unexpected ${res.statusCode ?? 0}`)))
  })
  return socket
}

async function echo (socket: WebSocket, message: string | Buffer): Promise<Buffer> {
  socket.send(message)
  const [data] = await once(socket, 'message') as [Buffer]
  return data
}

/** The status a refused upgrade gets (ws reports it as 'unexpected-response'). */
async function refusedStatus (url: string, options: WebSocket.ClientOptions = {}): Promise<number> {
  const socket = new WebSocket(url, options)
  return await new Promise((resolve, reject) => {
    socket.once('unexpected-response', (_req, res) => { res.resume(); resolve(res.statusCode ?? 0); socket.terminate() })
    socket.once('open', () => { socket.terminate(); reject(new Error('upgraded')) })
    socket.once('error', () => {})
  })
}

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
function handshake (path: string, extra = '', method = 'GET'): string {
  return `${method} ${path} HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`
}

async function gatewayMetric (url: string, name: string): Promise<number> {
  const metrics = await httpRequest(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  const match = new RegExp(`^${name} (\\d+)`, 'm').exec(metrics.body)
  return match === null ? -1 : Number(match[1])
}

t.test('a tunnel: messages both ways, forwarded headers, gauge, one audit row at close with status 101 and bytes', async (t) => {
  const upstream = await startWsUpstream(t)
  const { app, url, port } = await startGateway(t)
  await createRoute(app, { name: 'ws', path: '/ws', websocket: true, targets: [{ url: upstream.url, weight: 1 }] })
  const socket = await openWs(t, `ws://127.0.0.1:${port}/ws/chat?room=1`, { headers: { 'x-request-id': 'ws-test-1' } })
  t.equal((await echo(socket, 'hello')).toString(), 'hello')
  const big = Buffer.alloc(1024 * 1024, 7)
  t.same(await echo(socket, big), big, '1 MiB both ways')
  const seen = upstream.upgrades[0]
  t.equal(seen.url, '/ws/chat?room=1')
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(seen.headers['x-request-id'], 'ws-test-1')
  t.equal(seen.headers.upgrade, 'websocket')
  t.equal(await gatewayMetric(url, 'gatehouse_websocket_connections'), 1)
  socket.close(1000, 'bye')
  await once(socket, 'close')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(await gatewayMetric(url, 'gatehouse_websocket_connections'), 0)
  await app.audit.flush()
  const rows = await app.db.selectFrom('audit_log').selectAll().where('request_id', '=', 'ws-test-1').execute()
  t.equal(rows.length, 1, 'one row per tunnel')
  t.equal(rows[0].status, 101)
  t.equal(rows[0].outcome, 'proxied')
  t.ok((rows[0].bytes_in ?? 0) > 1024 * 1024, `bytes in ${rows[0].bytes_in}`)
  t.ok((rows[0].bytes_out ?? 0) > 1024 * 1024, `bytes out ${rows[0].bytes_out}`)
  t.ok((rows[0].duration_ms ?? 0) > 0)
})

t.test('refusals: no websocket on the route 404, invalid handshakes 400, never tunnelled', async (t) => {
  const upstream = await startWsUpstream(t)
  const { app, port } = await startGateway(t)
  await createRoute(app, { name: 'ws', path: '/ws', websocket: true, targets: [{ url: upstream.url, weight: 1 }] })
  await createRoute(app, { name: 'plain', path: '/plain', targets: [{ url: upstream.url, weight: 1 }] })
  t.equal(await refusedStatus(`ws://127.0.0.1:${port}/plain`), 404)
  t.equal(await refusedStatus(`ws://127.0.0.1:${port}/nothing`), 404)
  const cases: Array<[string, string]> = [
    ['POST', handshake('/ws', 'Content-Length: 0\r\n', 'POST')],
    ['PUT with a body', handshake('/ws', 'Content-Length: 3\r\n', 'PUT') + 'abc'],
    ['missing key', 'GET /ws HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n'],
    ['short key', handshake('/ws').replace(KEY, 'abc')],
    ['version 8', handshake('/ws').replace('Version: 13', 'Version: 8')],
    ['no version', handshake('/ws').replace('Sec-WebSocket-Version: 13\r\n', '')]
  ]
  for (const [what, payload] of cases) {
    const answer = await rawHttp(port, payload)
    t.equal(rawStatus(answer), 400, `${what}: ${answer.split('\r\n')[0]}`)
    t.match(answer, /"statusCode":400/)
  }
  t.equal(upstream.upgrades.length, 0, 'nothing reached the upstream')
  t.equal(upstream.requests.length, 0)
})

t.test('websocket-smuggle: an upstream that does not answer 101 with the right accept gets no tunnel', async (t) => {
  let mode: 'refuse' | 'bad-accept' | 'ok-200' = 'refuse'
  const requests: string[] = []
  const server = createServer((req, res) => { requests.push(`${req.method ?? ''} ${req.url ?? ''}`); res.end('internal') })
  server.on('upgrade', (req: IncomingMessage, socket) => {
    requests.push(`UPGRADE ${req.url ?? ''}`)
    if (mode === 'refuse') socket.end('HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 7\r\n\r\nupgrade')
    else if (mode === 'ok-200') socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
    else socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const target = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const { app, port } = await startGateway(t)
  await createRoute(app, { name: 'ws', path: '/ws', websocket: true, targets: [{ url: target, weight: 1 }] })

  // The smuggled second request follows the handshake at once, as the attack does.
  const smuggle = handshake('/ws') + 'GET /internal HTTP/1.1\r\nHost: internal\r\n\r\n'
  const refused = await rawHttp(port, smuggle)
  t.equal(rawStatus(refused), 426, 'the upstream\'s answer is relayed')
  t.match(refused, /connection: close/i)
  t.notMatch(refused, /internal/, 'no answer to the smuggled request')

  mode = 'ok-200'
  const ok = await rawHttp(port, smuggle)
  t.equal(rawStatus(ok), 200)
  t.notMatch(ok, /internal/)

  mode = 'bad-accept'
  const badAccept = await rawHttp(port, smuggle)
  t.equal(rawStatus(badAccept), 502)
  t.match(badAccept, /Sec-WebSocket-Accept/)
  t.notMatch(badAccept, /internal/)
  t.notOk(requests.includes('GET /internal'), `the upstream never saw the smuggled request (${requests.join(', ')})`)
})

t.test('the upgrade runs the route pipeline: auth, rate limit (one hit per connection), Origin', async (t) => {
  const upstream = await startWsUpstream(t)
  const { app, port } = await startGateway(t)
  await createRoute(app, { name: 'authed', path: '/authed', websocket: true, auth: { type: 'api-key', header: 'x-api-key' }, targets: [{ url: upstream.url, weight: 1 }] })
  await createRoute(app, { name: 'limited', path: '/limited', websocket: true, rateLimit: { max: 2, windowMs: 60_000, by: 'ip' }, targets: [{ url: upstream.url, weight: 1 }] })
  await createRoute(app, { name: 'origin', path: '/origin', websocket: true, cors: { origins: ['https://app.example.com'], methods: ['GET'], headers: [], exposedHeaders: [], credentials: true, maxAge: 600 }, targets: [{ url: upstream.url, weight: 1 }] })
  await createConsumer(app, 'alice')
  const { key } = await createApiKey(app, 'alice')
  t.equal(await refusedStatus(`ws://127.0.0.1:${port}/authed`), 401)
  const authed = await openWs(t, `ws://127.0.0.1:${port}/authed`, { headers: { 'x-api-key': key } })
  t.equal((await echo(authed, 'ok')).toString(), 'ok')
  t.notOk('x-api-key' in (upstream.upgrades.at(-1)?.headers ?? {}), 'the credential is not forwarded')

  const first = await openWs(t, `ws://127.0.0.1:${port}/limited`)
  // Many messages on one tunnel are one hit.
  for (let i = 0; i < 5; i++) await echo(first, `m${i}`)
  await openWs(t, `ws://127.0.0.1:${port}/limited`)
  t.equal(await refusedStatus(`ws://127.0.0.1:${port}/limited`), 429, 'the third connection is limited')

  t.equal(await refusedStatus(`ws://127.0.0.1:${port}/origin`, { origin: 'https://evil.example.com' }), 403)
  await openWs(t, `ws://127.0.0.1:${port}/origin`, { origin: 'https://app.example.com' })
  // The same check as the route's CORS policy: origins compare without case.
  await openWs(t, `ws://127.0.0.1:${port}/origin`, { origin: 'https://APP.example.com' })
})

t.test('tunnels close when idle, and when their route is deleted or disabled', async (t) => {
  const upstream = await startWsUpstream(t)
  const { app, port } = await startGateway(t)
  await createRoute(app, { name: 'idle', path: '/idle', websocket: { idleTimeoutMs: 1000 }, targets: [{ url: upstream.url, weight: 1 }] })
  await createRoute(app, { name: 'gone', path: '/gone', websocket: true, targets: [{ url: upstream.url, weight: 1 }] })
  await createRoute(app, { name: 'off', path: '/off', websocket: true, targets: [{ url: upstream.url, weight: 1 }] })

  const idle = await openWs(t, `ws://127.0.0.1:${port}/idle`)
  await new Promise((resolve) => setTimeout(resolve, 600))
  await echo(idle, 'still here')
  const started = Date.now()
  const [idleCode] = await once(idle, 'close') as [number]
  const idleFor = Date.now() - started
  t.equal(idleCode, 1001, 'closed with Going Away')
  t.ok(idleFor >= 900 && idleFor < 3000, `closed after about 1 s without traffic (${idleFor} ms)`)

  const gone = await openWs(t, `ws://127.0.0.1:${port}/gone`)
  const off = await openWs(t, `ws://127.0.0.1:${port}/off`)
  const goneClosed = once(gone, 'close')
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/routes/gone', headers: adminHeaders })).statusCode, 204)
  t.equal((await goneClosed)[0], 1001, 'deleting the route closed its tunnel with Going Away')
  t.equal(off.readyState, WebSocket.OPEN, 'other tunnels stay')
  const offClosed = once(off, 'close')
  await app.inject({ method: 'PATCH', url: '/admin/routes/off', headers: adminHeaders, payload: { enabled: false } })
  t.equal((await offClosed)[0], 1001, 'disabling the route closed its tunnel')
})

t.test('wss on the HTTPS listener', async (t) => {
  const upstream = await startWsUpstream(t)
  const { app, tlsPort } = await startTlsGateway(t)
  await createRoute(app, { name: 'ws', path: '/ws', websocket: true, targets: [{ url: upstream.url, weight: 1 }] })
  const socket = await openWs(t, `wss://127.0.0.1:${tlsPort}/ws`, { rejectUnauthorized: false })
  t.equal((await echo(socket, 'secure')).toString(), 'secure')
  t.equal(upstream.upgrades[0].headers['x-forwarded-proto'], 'https')
})

t.test('shutdown: the drain waits for tunnels, closes them at SHUTDOWN_GRACE_MS, and exits 0', async (t) => {
  const upstream = await startWsUpstream(t)
  const gateway = await spawnGateway(t, { SHUTDOWN_GRACE_MS: '1500' })
  const created = await httpRequest(`${gateway.url}/admin/routes`, { method: 'POST', headers: { ...adminHeaders, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'ws', path: '/ws', websocket: true, targets: [{ url: upstream.url }] }) })
  t.equal(created.statusCode, 201)
  const socket = await openWs(t, `ws://127.0.0.1:${gateway.port}/ws`)
  const closed = once(socket, 'close')
  const started = Date.now()
  gateway.process.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal((await echo(socket, 'during the drain')).toString(), 'during the drain', 'the tunnel still works while draining')
  const [code] = await closed as [number]
  t.equal(code, 1001, 'Going Away, not an abrupt close')
  const after = Date.now() - started
  t.ok(after >= 1200, `closed at the grace period (${after} ms)`)
  t.equal(await gateway.exited, 0)
})

t.test('a non-WebSocket upgrade (h2c) without a body is served as a plain request', async (t) => {
  const upstream = await startWsUpstream(t)
  const { app, port } = await startGateway(t)
  await createRoute(app, { name: 'plain', path: '/plain', targets: [{ url: upstream.url, weight: 1 }] })
  const answer = await rawHttp(port, 'GET /plain HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n')
  t.equal(rawStatus(answer), 200)
  t.match(answer, /plain answer/)
  t.match(answer, /connection: close/i, 'the connection closes after it')
  t.equal(upstream.upgrades.length, 0, 'never upgraded')
})
