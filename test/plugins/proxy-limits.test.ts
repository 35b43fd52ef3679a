import type { IncomingMessage, ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { request as undiciRequest } from 'undici'
import { createRoute, rawHttp, startGateway, startUpstream, failOnUnhandledRejections } from '../helper.js'
import { parseRaw, rawExchange, type RawResponse } from './proxy-raw.js'

failOnUnhandledRejections(t)

/** What the upstream saw of each request: whether its body ended or was cut. */
const seen: Array<{ url: string, bytes: number, ended: boolean, aborted: boolean }> = []
const upstream = await startUpstream(t, (req: IncomingMessage, res: ServerResponse) => {
  const entry = { url: req.url ?? '', bytes: 0, ended: false, aborted: false }
  seen.push(entry)
  req.on('data', (chunk: Buffer) => { entry.bytes += chunk.length })
  req.on('end', () => {
    entry.ended = true
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`got ${entry.bytes}`)
  })
  req.on('error', () => { entry.aborted = true })
  req.on('aborted', () => { entry.aborted = true })
})
const { app, port, url } = await startGateway(t)
await createRoute(app, { name: 'small', path: '/small', bodyLimit: 1000, targets: [{ url: upstream.url, weight: 1 }] })
await createRoute(app, { name: 'open', path: '/open', targets: [{ url: upstream.url, weight: 1 }] })

t.beforeEach(() => { seen.length = 0 })

function assertJsonError (t: Test, response: RawResponse, statusCode: number, message?: string | RegExp): void {
  t.equal(response.statusCode, statusCode)
  t.match(response.headers['content-type'], /^application\/json/)
  const body = JSON.parse(response.body)
  t.equal(body.statusCode, statusCode)
  t.equal(typeof body.error, 'string')
  t.match(body.requestId, /^[0-9a-f-]{36}$/)
  if (response.headers['x-request-id'] !== undefined) t.equal(body.requestId, response.headers['x-request-id'])
  if (message !== undefined) t.match(body.message, message)
}

t.test('duplicate Host, Authorization, X-Api-Key, X-Request-Id or Proxy-Authorization lines are refused with 400', async (t) => {
  const duplicates: Array<[string, string]> = [
    ['host', 'Host: a.test\r\nHost: b.test'],
    ['host', 'Host: a.test\r\nhOST: a.test'],
    ['authorization', 'Host: a.test\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b'],
    ['x-api-key', 'Host: a.test\r\nX-Api-Key: a\r\nx-api-key: b'],
    ['x-request-id', 'Host: a.test\r\nX-Request-Id: a\r\nX-Request-Id: b'],
    ['proxy-authorization', 'Host: a.test\r\nProxy-Authorization: a\r\nProxy-Authorization: b']
  ]
  for (const [name, headers] of duplicates) {
    const response = parseRaw(await rawHttp(port, `GET /open/x HTTP/1.1\r\n${headers}\r\nConnection: close\r\n\r\n`))
    assertJsonError(t, response, 400, `duplicate ${name} header`)
  }
  t.same(seen, [])
})

t.test('duplicate or conflicting Content-Length is refused by the parser with 400 and the connection closed', async (t) => {
  for (const headers of ['Content-Length: 2\r\nContent-Length: 2', 'Content-Length: 2\r\nContent-Length: 3', 'Content-Length: 2, 2', 'Content-Length: +2', 'Content-Length: 0x2']) {
    const exchange = await rawExchange(port, `POST /open/x HTTP/1.1\r\nHost: a.test\r\n${headers}\r\n\r\nhiGET /open/smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n`)
    assertJsonError(t, parseRaw(exchange.text), 400)
    t.equal(exchange.closedByServer, true, headers)
    t.equal((exchange.text.match(/HTTP\/1\.1 /g) ?? []).length, 1, `one answer only: ${headers}`)
  }
  t.same(seen, [])
})

t.test('Content-Length with Transfer-Encoding and other smuggling attempts: 400, closed, nothing reaches the upstream whole', async (t) => {
  const smuggled = 'GET /open/smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n'
  const attempts = [
    `POST /open/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    `POST /open/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\n${smuggled}`,
    `POST /open/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n${smuggled}`,
    `POST /open/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled}`,
    `POST /open/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    `POST /open/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`,
    `POST /open/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n${smuggled}`,
    `POST /open/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5;ext\nhello\r\n0\r\n\r\n${smuggled}`,
    `POST /open/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n${smuggled}`,
    `GET /open/x HTTP/1.1\r\nHost: a.test\r\nX-Junk: a\nb\r\n\r\n${smuggled}`,
    `GET /open/x HTTP/1.1\r\nHost: a.test\r\n Folded: continuation\r\n\r\n${smuggled}`
  ]
  for (const attempt of attempts) {
    const exchange = await rawExchange(port, attempt)
    const label = JSON.stringify(attempt.slice(0, 90))
    t.equal(rawStatusOf(exchange.text), 400, label)
    t.equal(exchange.closedByServer, true, label)
    t.equal((exchange.text.match(/HTTP\/1\.1 /g) ?? []).length, 1, `one answer only: ${label}`)
  }
  // A broken chunked body is detected after the head was routed: the upstream may have seen
  // that request start, but never complete, and never the smuggled one.
  t.same(seen.filter((entry) => entry.ended), [], 'no request reached the upstream whole')
  t.same(seen.filter((entry) => entry.url.includes('smuggled')), [], 'the smuggled request never reached the upstream')
})

function rawStatusOf (text: string): number {
  return parseRaw(text).statusCode
}

t.test('a declared body over the route bodyLimit is 413 before the upstream is contacted, and the connection closes', async (t) => {
  // Only the head is sent: the answer must not wait for the body.
  const exchange = await rawExchange(port, 'POST /small/x HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/octet-stream\r\nContent-Length: 1001\r\n\r\n', { timeoutMs: 2000 })
  const response = parseRaw(exchange.text)
  assertJsonError(t, response, 413, 'request body exceeds the limit of 1000 bytes')
  t.equal(response.headers.connection, 'close')
  t.equal(exchange.closedByServer, true)
  t.same(seen, [])
})

t.test('Expect: 100-continue with a declared body over the limit gets the 413 only, no 100 Continue first', async (t) => {
  const exchange = await rawExchange(port, 'POST /small/x HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n', { timeoutMs: 2000 })
  t.match(exchange.text, /^HTTP\/1\.1 413 Payload Too Large\r\n/)
  t.notMatch(exchange.text, /100 Continue/)
  assertJsonError(t, parseRaw(exchange.text), 413, 'request body exceeds the limit of 1000 bytes')
  t.equal(exchange.closedByServer, true)
  t.same(seen, [])
})

t.test('Expect: 100-continue within the limit gets 100 Continue, then the body is forwarded', async (t) => {
  const exchange = await rawExchange(port, 'POST /small/x HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n', { then: 'a'.repeat(1000) })
  t.match(exchange.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/)
  t.equal(parseRaw(exchange.text.slice(exchange.text.indexOf('HTTP/1.1 200'))).body, 'got 1000')
})

t.test('Expect: 100-continue refused by a policy before the body limit gets no 100 Continue either (404 here)', async (t) => {
  const exchange = await rawExchange(port, 'POST /nowhere HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 10\r\nConnection: close\r\n\r\n', { timeoutMs: 2000 })
  t.match(exchange.text, /^HTTP\/1\.1 404 Not Found\r\n/)
  t.notMatch(exchange.text, /100 Continue/)
})

t.test('a body exactly at the limit passes', async (t) => {
  const response = parseRaw(await rawHttp(port, `POST /small/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n${'a'.repeat(1000)}`))
  t.equal(response.statusCode, 200)
  t.equal(response.body, 'got 1000')
  const chunked = parseRaw(await rawHttp(port, `POST /small/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3e8\r\n${'a'.repeat(1000)}\r\n0\r\n\r\n`))
  t.equal(chunked.body, 'got 1000')
})

t.test('a chunked body running past the limit is cut: 413 to the client, an aborted request upstream', async (t) => {
  // 600 bytes, a pause (so the upstream has the request), then 600 more.
  const head = 'POST /small/x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n'
  const chunk = `258\r\n${'a'.repeat(600)}\r\n`
  const answer = new Promise<RawResponse & { closed: boolean }>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (data: Buffer) => chunks.push(data))
    socket.on('error', reject)
    socket.on('close', () => resolve({ ...parseRaw(Buffer.concat(chunks).toString('latin1')), closed: true }))
    socket.write(head + chunk)
    setTimeout(() => socket.write(chunk), 200)
    // Keeps sending: the gateway must not wait for the end of an over-limit body.
    setTimeout(() => socket.write(chunk), 400)
  })
  const response = await answer
  assertJsonError(t, response, 413, 'request body exceeds the limit of 1000 bytes')
  t.equal(response.headers.connection, 'close')
  t.equal(seen.length, 1)
  t.equal(seen[0].ended, false, 'the upstream never saw the body end')
  await waitFor(() => seen[0].aborted)
  t.equal(seen[0].aborted, true, 'the upstream saw the request aborted')
  t.ok(seen[0].bytes <= 1000, `the upstream got at most the limit (${seen[0].bytes} bytes)`)
})

async function waitFor (condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
}

t.test('a chunked upload over the limit through a client library ends with 413', async (t) => {
  const body = Readable.from((function * () { for (let i = 0; i < 100; i++) yield Buffer.alloc(100, 1) })())
  let status = 0
  try {
    const response = await undiciRequest(url + '/small/y', { method: 'POST', body })
    status = response.statusCode
    await response.body.text()
  } catch (err) {
    // The gateway may close while the client is still writing; the answer is what matters.
    t.fail(`client error: ${(err as Error).message}`)
  }
  t.equal(status, 413)
})

t.test('a header block over 16 KiB is 431 JSON; just under passes', async (t) => {
  const big = await rawExchange(port, `GET /open/x HTTP/1.1\r\nHost: a.test\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`)
  assertJsonError(t, parseRaw(big.text), 431)
  t.equal(big.closedByServer, true)
  const many = await rawExchange(port, `GET /open/x HTTP/1.1\r\nHost: a.test\r\n${Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'b'.repeat(40)}`).join('\r\n')}\r\n\r\n`)
  assertJsonError(t, parseRaw(many.text), 431)
  t.same(seen, [])
  const fits = parseRaw(await rawHttp(port, `GET /open/x HTTP/1.1\r\nHost: a.test\r\nX-Big: ${'a'.repeat(15 * 1024)}\r\nConnection: close\r\n\r\n`))
  t.equal(fits.statusCode, 200)
})

t.test('bad input never makes the gateway answer 5xx', async (t) => {
  const targets = ['/open/%', '/open/%%', '/open/%2', '/open/%G0', '/open/%u0041', '/open/%C0%AE%C0%AE/', '/open/\x7f', '/open/a b', '/open/%ff%fe',
    '/open/;/../x', '/open/#frag', '/open/x?%', '/open/x?\x01', '/open/' + 'a'.repeat(8000), '/%2e', '/%2e%2e', '/.', '/..', '/open/..;/..;/', '//open//', '/open/\\']
  const methods = ['GET', 'POST', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT', 'PROPFIND', 'get', 'G ET', 'QUERY']
  for (const method of methods) {
    for (const target of targets) {
      const exchange = await rawExchange(port, `${method} ${target} HTTP/1.1\r\nHost: a.test\r\nContent-Type: \x01\r\nConnection: close\r\n\r\n`, { timeoutMs: 2000 })
      const status = rawStatusOf(exchange.text)
      if (status >= 500 || status === 0) t.fail(`${method} ${JSON.stringify(target)} → ${status}`)
    }
  }
  const health = await undiciRequest(url + '/health')
  t.equal(health.statusCode, 200)
  await health.body.text()
})
