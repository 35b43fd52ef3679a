import { connect, createServer, type Socket } from 'node:net'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { request as undiciRequest } from 'undici'
import { createRoute, failOnUnhandledRejections, httpRequest, rawHttp, rawStatus, startGateway, startUpstream } from '../helper.js'

// Every test here provokes upstream failures: none may leave an unhandled rejection behind.
failOnUnhandledRejections(t)

/** A URL nothing listens on: connections are refused. */
async function deadUrl (): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return `http://127.0.0.1:${port}`
}

/** A TCP server that accepts and never says a word (for TLS targets: the handshake never completes). */
async function silentServer (t: Test): Promise<number> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => { sockets.add(socket) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    for (const socket of sockets) socket.destroy()
    server.close(() => resolve())
  }))
  return (server.address() as { port: number }).port
}

const answer = (name: string) => (_req: unknown, res: import('node:http').ServerResponse) => { res.end(name) }

t.test('a GET whose connection is refused is retried on another target', async (t) => {
  const dead = await deadUrl()
  const live = await startUpstream(t, answer('live'))
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'pair', path: '/', retries: 1, targets: [{ url: dead, weight: 1 }, { url: live.url, weight: 1 }] })
  const response = await httpRequest(`${url}/x`)
  t.equal(response.statusCode, 200)
  t.equal(response.body, 'live')
  t.equal(live.requests.length, 1)
  t.equal(app.upstreams.target(dead)?.consecutiveFailures, 1, 'the refused attempt counts against the dead target')
  t.match(await app.metrics.registry.metrics(), 'gatehouse_upstream_retries_total 1')
})

t.test('retries: 0 answers 502 on the first connection failure', async (t) => {
  const dead = await deadUrl()
  const live = await startUpstream(t, answer('live'))
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'pair', path: '/', retries: 0, targets: [{ url: dead, weight: 1 }, { url: live.url, weight: 1 }] })
  const response = await httpRequest(`${url}/x`, { headers: { 'x-request-id': 'no-retry' } })
  t.equal(response.statusCode, 502)
  t.same(response.json(), { statusCode: 502, error: 'Bad Gateway', message: 'upstream connection failed: ECONNREFUSED', requestId: 'no-retry' })
  t.equal(live.requests.length, 0)
})

t.test('a POST is never retried, and its client still gets the 502 on a usable connection', async (t) => {
  const dead = await deadUrl()
  const live = await startUpstream(t)
  const { app, url, port } = await startGateway(t)
  await createRoute(app, { name: 'pair', path: '/', retries: 3, targets: [{ url: dead, weight: 1 }, { url: live.url, weight: 1 }] })
  const response = await httpRequest(`${url}/x`, { method: 'POST', body: 'payload', headers: { 'content-type': 'text/plain' } })
  t.equal(response.statusCode, 502)
  t.equal(response.json().message, 'upstream connection failed: ECONNREFUSED')
  t.equal(live.requests.length, 0)

  t.equal((await httpRequest(`${url}/skip`)).statusCode, 200, 'round-robin: the live target is next, the dead one after')
  // One keep-alive connection carries a POST that fails and then a GET: the unsent body was drained.
  const raw = await rawHttp(port,
    'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello' +
    'GET /y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
  const statuses = [...raw.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => Number(match[1]))
  t.equal(statuses.length, 2, 'two answers on one connection')
  t.equal(statuses[0], 502)
  t.equal(statuses[1], 200)
})

t.test('a PUT with a body is retried on another target when the body was not yet sent, and arrives whole', async (t) => {
  const dead = await deadUrl()
  const live = await startUpstream(t)
  const { app, url } = await startGateway(t)
  // Two routes over the same pair: each one's first pick is the dead target.
  await createRoute(app, { name: 'sized', path: '/sized', retries: 1, targets: [{ url: dead, weight: 1 }, { url: live.url, weight: 1 }] })
  await createRoute(app, { name: 'chunked', path: '/chunked', retries: 1, targets: [{ url: dead, weight: 1 }, { url: live.url, weight: 1 }] })
  const sized = await httpRequest(`${url}/sized`, { method: 'PUT', body: 'x'.repeat(100_000) })
  t.equal(sized.statusCode, 200)
  t.equal(sized.json().body.length, 100_000)

  const chunked = await httpRequest(`${url}/chunked`, {
    method: 'PUT',
    body: Readable.from(['part one, ', 'part two'])
  })
  t.equal(chunked.statusCode, 200)
  t.equal(chunked.json().headers['transfer-encoding'], 'chunked')
  t.equal(chunked.json().body, 'part one, part two')
  t.equal(app.upstreams.target(dead)?.consecutiveFailures, 2, 'both requests tried the dead target first')
  t.equal(live.requests.length, 2)
})

t.test('a 5xx answer is passed through, not retried', async (t) => {
  const failing = await startUpstream(t, (_req, res) => { res.statusCode = 503; res.end('busy') })
  const live = await startUpstream(t, answer('live'))
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'pair', path: '/', retries: 2, targets: [{ url: failing.url, weight: 1 }, { url: live.url, weight: 1 }] })
  const response = await httpRequest(`${url}/x`)
  t.equal(response.statusCode, 503)
  t.equal(response.body, 'busy')
  t.equal(live.requests.length, 0)
})

t.test('a reset before any response byte is retried for a GET; alone it is a 502', async (t) => {
  const resetting = await startUpstream(t, (req) => { req.socket.destroy() })
  const live = await startUpstream(t, answer('live'))
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'pair', path: '/pair', retries: 1, targets: [{ url: resetting.url, weight: 1 }, { url: live.url, weight: 1 }] })
  await createRoute(app, { name: 'solo', path: '/solo', retries: 1, targets: [{ url: resetting.url, weight: 1 }] })
  const retried = await httpRequest(`${url}/pair`)
  t.equal(retried.statusCode, 200)
  t.equal(retried.body, 'live')
  const alone = await httpRequest(`${url}/solo`)
  t.equal(alone.statusCode, 502)
  t.match(alone.json().message, /^upstream connection failed: (UND_ERR_SOCKET|ECONNRESET)$/)
})

t.test('a response cut mid-body is not retried; the client sees an aborted response, not a hang', async (t) => {
  const cutting = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' })
    res.write('partial ')
    setTimeout(() => res.socket?.destroy(), 30)
  })
  const live = await startUpstream(t, answer('live'))
  const { app, url, port } = await startGateway(t)
  await createRoute(app, { name: 'pair', path: '/', retries: 2, targets: [{ url: cutting.url, weight: 1 }, { url: live.url, weight: 1 }] })

  const started = Date.now()
  const response = await undiciRequest(`${url}/x`)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-length'], '1000')
  await t.rejects(response.body.text(), 'the body errors (premature close)')
  t.ok(Date.now() - started < 3000, 'the client is not left hanging')
  t.equal(live.requests.length, 0, 'part of the response was received: no retry')

  const target = app.upstreams.target(cutting.url)
  await waitFor(() => target?.inFlight === 0)
  t.equal(target?.consecutiveFailures, 1, 'the cut counts against the target')

  // Chunked responses are cut the same way (no terminating chunk), over a raw socket.
  const raw = await rawHttp(port, 'GET /y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
  t.equal(rawStatus(raw), 200, 'round-robin: the live target answers the second request')
  const third = await rawHttp(port, 'GET /z HTTP/1.1\r\nHost: a\r\n\r\n', 5000)
  t.equal(rawStatus(third), 200)
  t.match(third, /partial $/, 'the partial body arrives, then the connection closes')
  t.equal((await httpRequest(`${url}/after`)).statusCode, 200, 'the gateway keeps serving')
})

t.test('an upstream that sends headers then resets before any body byte yields a 502', async (t) => {
  const resetting = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '10' })
    res.flushHeaders()
    setTimeout(() => res.socket?.destroy(), 30)
  })
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'solo', path: '/', targets: [{ url: resetting.url, weight: 1 }] })
  const response = await httpRequest(`${url}/x`, { headers: { 'x-request-id': 'cut-early' } })
  t.equal(response.statusCode, 502)
  t.equal(response.json().statusCode, 502)
  t.match(response.json().message, /^upstream connection failed: /, 'names what failed, not "internal error"')
  t.equal(response.json().requestId, 'cut-early')
  t.equal(response.headers['x-request-id'], 'cut-early')
  t.equal(response.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(response.headers['content-length'], String(Buffer.byteLength(response.body)))
})

t.test('no answer within timeoutMs is a 504, not retried', async (t) => {
  const slow = await startUpstream(t, (_req, res) => { setTimeout(() => res.end('late'), 3000) })
  const live = await startUpstream(t, answer('live'))
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'pair', path: '/', timeoutMs: 300, retries: 2, targets: [{ url: slow.url, weight: 1 }, { url: live.url, weight: 1 }] })
  const started = Date.now()
  const response = await httpRequest(`${url}/x`, { headers: { 'x-request-id': 'slow-1' } })
  const elapsed = Date.now() - started
  t.equal(response.statusCode, 504)
  t.same(response.json(), { statusCode: 504, error: 'Gateway Timeout', message: 'upstream did not answer within 300 ms', requestId: 'slow-1' })
  t.ok(elapsed >= 290 && elapsed < 2500, `answered after ${elapsed} ms`)
  t.equal(live.requests.length, 0)
})

t.test('a connect timeout is separate from timeoutMs: 504, and retried on another target', async (t) => {
  const port = await silentServer(t)
  const blackhole = `https://127.0.0.1:${port}`
  const live = await startUpstream(t, answer('live'))
  const { app, url } = await startGateway(t, { build: { upstreams: { connectTimeoutMs: 200 } } })
  await createRoute(app, { name: 'solo', path: '/solo', timeoutMs: 10_000, targets: [{ url: blackhole, weight: 1 }] })
  await createRoute(app, { name: 'pair', path: '/pair', timeoutMs: 10_000, retries: 1, targets: [{ url: blackhole, weight: 1 }, { url: live.url, weight: 1 }] })

  const started = Date.now()
  const alone = await httpRequest(`${url}/solo`)
  const elapsed = Date.now() - started
  t.equal(alone.statusCode, 504)
  t.equal(alone.json().message, 'upstream connection timed out')
  t.ok(elapsed >= 190 && elapsed < 3000, `connect timeout after ${elapsed} ms, well before timeoutMs`)

  const retried = await httpRequest(`${url}/pair`)
  t.equal(retried.statusCode, 200)
  t.equal(retried.body, 'live')
})

t.test('a client that disconnects while waiting aborts the upstream request', async (t) => {
  let upstreamClosed = false
  const hanging = await startUpstream(t, (req) => { req.socket.once('close', () => { upstreamClosed = true }) })
  const { app, port } = await startGateway(t)
  await createRoute(app, { name: 'solo', path: '/', targets: [{ url: hanging.url, weight: 1 }] })

  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write('GET /wait HTTP/1.1\r\nHost: a\r\n\r\n')
  await waitFor(() => hanging.requests.length === 1)
  const target = app.upstreams.target(hanging.url)
  t.equal(target?.inFlight, 1)
  socket.destroy()
  await waitFor(() => upstreamClosed, 3000)
  t.equal(upstreamClosed, true, 'the upstream connection was closed')
  await waitFor(() => target?.inFlight === 0)
  t.equal(target?.consecutiveFailures, 0, 'a client leaving says nothing about the target')
})

t.test('a client that disconnects mid-response releases the upstream too', async (t) => {
  let upstreamClosed = false
  const streaming = await startUpstream(t, (req, res) => {
    req.socket.once('close', () => { upstreamClosed = true })
    res.writeHead(200, { 'content-type': 'text/plain' })
    const timer = setInterval(() => res.write('tick\n'), 20)
    res.once('close', () => clearInterval(timer))
  })
  const { app, port } = await startGateway(t)
  await createRoute(app, { name: 'solo', path: '/', targets: [{ url: streaming.url, weight: 1 }] })
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const received: Buffer[] = []
  socket.on('data', (chunk: Buffer) => received.push(chunk))
  socket.write('GET /stream HTTP/1.1\r\nHost: a\r\n\r\n')
  await waitFor(() => Buffer.concat(received).includes('tick'))
  socket.destroy()
  await waitFor(() => upstreamClosed, 3000)
  const target = app.upstreams.target(streaming.url)
  await waitFor(() => target?.inFlight === 0)
  t.equal(target?.consecutiveFailures, 0)
})

t.test('a client that aborts a chunked upload, before or after the gateway gave up on the upstream, crashes nothing', async (t) => {
  const dead = await deadUrl()
  const reading = await startUpstream(t, (req, res) => { req.resume(); req.on('end', () => res.end('done')) })
  const { app, port, url } = await startGateway(t)
  await createRoute(app, { name: 'dead', path: '/dead', targets: [{ url: dead, weight: 1 }] })
  await createRoute(app, { name: 'live', path: '/live', targets: [{ url: reading.url, weight: 1 }] })

  for (const path of ['/dead', '/live']) {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    const received: Buffer[] = []
    socket.on('data', (chunk: Buffer) => received.push(chunk))
    socket.write(`PUT ${path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`)
    if (path === '/dead') await waitFor(() => Buffer.concat(received).toString().startsWith('HTTP/1.1 502'))
    else await waitFor(() => reading.requests.length === 1)
    socket.write('5\r\nwor') // half a chunk, then gone
    await new Promise((resolve) => setTimeout(resolve, 20))
    socket.destroy()
  }
  await waitFor(() => app.upstreams.target(reading.url)?.inFlight === 0)
  t.equal((await httpRequest(`${url}/live`, { method: 'PUT', body: 'x' })).body, 'done', 'the gateway keeps serving')
})

t.test('in-flight counts return to zero after HEAD, 204, 304 and error answers', async (t) => {
  const varied = await startUpstream(t, (req, res) => {
    const status = Number(req.url?.slice(1))
    res.statusCode = status
    res.end(status === 204 || status === 304 || req.method === 'HEAD' ? undefined : 'body')
  })
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'solo', path: '/', targets: [{ url: varied.url, weight: 1 }] })
  for (const [method, status] of [['HEAD', 200], ['GET', 204], ['GET', 304], ['GET', 404], ['GET', 500]] as const) {
    const response = await httpRequest(`${url}/${status}`, { method })
    t.equal(response.statusCode, status, `${method} ${status}`)
  }
  await waitFor(() => app.upstreams.target(varied.url)?.inFlight === 0)
  t.equal(app.upstreams.target(varied.url)?.inFlight, 0)
})

async function waitFor (condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

t.test('an upstream status outside 100–599, or a 101 nobody asked for, is a 502; unusual statuses within it pass through', async (t) => {
  const { app, url } = await startGateway(t)
  for (const [status, expected] of [['099', 502], ['101', 502], ['1000', 502], ['600', 502], ['999', 502], ['599', 599], ['299', 299]] as const) {
    const odd = createServer((socket) => { socket.once('data', () => socket.end(`HTTP/1.1 ${status} Odd\r\ncontent-length: 2\r\n\r\nok`)) })
    await new Promise<void>((resolve) => odd.listen(0, '127.0.0.1', resolve))
    t.teardown(() => odd.close())
    const port = (odd.address() as import('node:net').AddressInfo).port
    await createRoute(app, { name: `odd-${status}`, path: `/odd-${status}`, retries: 0, targets: [{ url: `http://127.0.0.1:${port}`, weight: 1 }] })
    const response = await httpRequest(`${url}/odd-${status}`)
    t.equal(response.statusCode, expected, `upstream status ${status}`)
    if (Number(status) > 599 && status.length === 3) t.equal(response.json().message, `upstream answered with status ${status}, outside 100–599`)
    else if (expected === 502) t.match(response.json().message, /^upstream connection failed: /)
    else t.equal(response.body, 'ok')
  }
  t.equal((await httpRequest(`${url}/health`)).statusCode, 200, 'the gateway keeps serving')
})
