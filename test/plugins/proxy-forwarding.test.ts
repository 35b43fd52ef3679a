import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import t from 'tap'
import { Agent } from 'undici'
import { createRoute, httpRequest, rawHttp, startGateway, startUpstream, failOnUnhandledRejections } from '../helper.js'
import { parseRaw, rawExchange } from './proxy-raw.js'

failOnUnhandledRejections(t)

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const upstream = await startUpstream(t)
const { app, url, port } = await startGateway(t)
await createRoute(app, { name: 'echo', path: '/echo', targets: [{ url: upstream.url, weight: 1 }] })
await createRoute(app, { name: 'strip', path: '/strip', stripPath: true, targets: [{ url: `${upstream.url}/v2`, weight: 1 }] })
await createRoute(app, { name: 'strip-root', path: '/strip-root/', stripPath: true, targets: [{ url: upstream.url, weight: 1 }] })
await createRoute(app, { name: 'base', path: '/base', targets: [{ url: `${upstream.url}/v2/`, weight: 1 }] })
await createRoute(app, { name: 'keep-host', path: '/keep-host', preserveHost: true, targets: [{ url: upstream.url, weight: 1 }] })

function last () {
  return upstream.requests[upstream.requests.length - 1]
}

/** Raw request to the gateway; returns the first response and what the upstream saw last. */
async function raw (head: string, body = '') {
  const before = upstream.requests.length
  const response = parseRaw(await rawHttp(port, head + '\r\n' + body))
  return { response, seen: upstream.requests.length > before ? last() : undefined }
}

t.test('stripPath and the target base path build the upstream path', async (t) => {
  const cases: Array<[string, string]> = [
    ['/strip/users/7?x=1', '/v2/users/7?x=1'],
    ['/strip/', '/v2/'],
    ['/strip', '/v2'],
    ['/strip?x', '/v2?x'],
    ['/strip-root/a/b', '/a/b'],
    ['/strip-root', '/'],
    ['/base/users', '/v2/base/users'],
    ['/echo/users', '/echo/users']
  ]
  for (const [path, expected] of cases) {
    const response = await httpRequest(url + path)
    t.equal(response.statusCode, 200, path)
    t.equal(response.json().url, expected, path)
  }
})

t.test('the query string reaches the upstream byte for byte', async (t) => {
  for (const query of ['?a=%2F&b=%zz&&c', '?', '?x=1&x=2&y', '?q=%E9%c3%a9+%20;a=b|c^d`e{f}', "?a='\"<>", '?%%%&=&==', '?p=/../x/%2e%2e']) {
    const { response, seen } = await raw(`GET /echo/q${query} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n`)
    t.equal(response.statusCode, 200, query)
    t.equal(seen?.url, `/echo/q${query}`, query)
  }
})

t.test('hop-by-hop headers, headers named in Connection and underscore names are not forwarded', async (t) => {
  const { response, seen } = await raw([
    'GET /echo/hop HTTP/1.1',
    'Host: a.test',
    'Connection: close, X-Secret, x-other',
    'X-Secret: s3cret',
    'X-Other: o',
    'Keep-Alive: timeout=5',
    'TE: trailers',
    'Trailer: x-t',
    'Upgrade: websocket',
    'Proxy-Connection: keep-alive',
    'Proxy-Foo: 1',
    'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
    'Transfer_Encoding: chunked',
    'X_Api_Key: k',
    'Content_Length: 5',
    'X-Kept: kept',
    ''
  ].join('\r\n'))
  t.equal(response.statusCode, 200)
  const names = (seen?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase())
  t.same(names, ['host', 'connection', 'x-kept', 'x-request-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'via', 'traceparent'])
  t.equal(seen?.headers.connection, 'keep-alive', 'the gateway keeps its own upstream connection alive')
  t.equal(seen?.headers['x-kept'], 'kept')
})

t.test('X-Forwarded-For is appended to, X-Forwarded-Proto and -Host are set', async (t) => {
  const plain = await raw('GET /echo/xff HTTP/1.1\r\nHost: Front.Example:8080\r\nConnection: close\r\n')
  t.equal(plain.seen?.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(plain.seen?.headers['x-forwarded-proto'], 'http')
  t.equal(plain.seen?.headers['x-forwarded-host'], 'Front.Example:8080')

  const chained = await raw('GET /echo/xff HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nForwarded: for=1.2.3.4\r\nConnection: close\r\n')
  t.equal(chained.seen?.headers['x-forwarded-for'], '203.0.113.9, 10.0.0.1, 127.0.0.1')
  t.equal(chained.seen?.headers['x-forwarded-proto'], 'http', 'TRUST_PROXY is off: the client does not choose the protocol')
  t.equal(chained.seen?.headers['x-forwarded-host'], 'a.test')
  t.equal(chained.seen?.headers.forwarded, undefined)

  const twoLines = await raw('GET /echo/xff HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 198.51.100.2\r\nConnection: close\r\n')
  t.equal(twoLines.seen?.headers['x-forwarded-for'], '198.51.100.1, 198.51.100.2, 127.0.0.1')
  t.same(twoLines.seen?.rawHeaders.filter((name) => name.toLowerCase() === 'x-forwarded-for'), ['x-forwarded-for'], 'sent as one header')
})

t.test('behind a trusted proxy (TRUST_PROXY), its X-Forwarded-Proto and -Host are passed on', async (t) => {
  const trusting = await startGateway(t, { env: { TRUST_PROXY: '127.0.0.1/32' } })
  await createRoute(trusting.app, { name: 'echo', path: '/echo', targets: [{ url: upstream.url, weight: 1 }] })
  const before = upstream.requests.length
  const response = parseRaw(await rawHttp(trusting.port, 'GET /echo/t HTTP/1.1\r\nHost: lb.internal\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\nConnection: close\r\n\r\n'))
  t.equal(response.statusCode, 200)
  t.equal(upstream.requests.length, before + 1)
  const seen = last()
  t.equal(seen.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1')
  t.equal(seen.headers['x-forwarded-proto'], 'https')
  t.equal(seen.headers['x-forwarded-host'], 'shop.example')
  t.equal(seen.headers.host, `127.0.0.1:${upstream.port}`)
})

t.test('an HTTP/1.0 request without Host gets no X-Forwarded-Host', async (t) => {
  const { response, seen } = await raw('GET /echo/old HTTP/1.0\r\n')
  t.equal(response.statusCode, 200)
  t.equal(seen?.headers['x-forwarded-host'], undefined)
  t.equal(seen?.headers.host, `127.0.0.1:${upstream.port}`)
})

t.test('Host is the target\'s unless preserveHost', async (t) => {
  const { seen } = await raw('GET /echo/h HTTP/1.1\r\nHost: client.test\r\nConnection: close\r\n')
  t.equal(seen?.headers.host, `127.0.0.1:${upstream.port}`)
  const kept = await raw('GET /keep-host/h HTTP/1.1\r\nHost: Client.Test:8443\r\nConnection: close\r\n')
  t.equal(kept.seen?.headers.host, 'Client.Test:8443')
  t.same(kept.seen?.rawHeaders.filter((name) => name.toLowerCase() === 'host'), ['host'], 'exactly one Host upstream')
})

t.test('a valid X-Request-Id is kept, an invalid one replaced; the same id goes upstream and back', async (t) => {
  const valid = ['abc', 'A.b_c:d-9', 'x'.repeat(128), '0']
  for (const id of valid) {
    const response = await httpRequest(url + '/echo/id', { headers: { 'x-request-id': id } })
    t.equal(response.headers['x-request-id'], id, id)
    t.equal(response.json().headers['x-request-id'], id, id)
  }
  const invalid = ['', 'x'.repeat(129), 'a b', 'a/b', 'a,b', 'é', '<script>']
  for (const id of invalid) {
    const { response, seen } = await raw(`GET /echo/id HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: ${id}\r\nConnection: close\r\n`)
    t.match(response.headers['x-request-id'], UUID, JSON.stringify(id))
    t.equal(seen?.headers['x-request-id'], response.headers['x-request-id'], JSON.stringify(id))
  }
  const generated = await httpRequest(url + '/echo/id')
  t.match(generated.headers['x-request-id'], UUID)
  t.equal(generated.json().headers['x-request-id'], generated.headers['x-request-id'])
})

t.test('Via: added upstream and on responses, appended to existing ones', async (t) => {
  const { response, seen } = await raw('GET /echo/via HTTP/1.1\r\nHost: a.test\r\nVia: 1.0 edge\r\nConnection: close\r\n')
  t.equal(seen?.headers.via, '1.0 edge, 1.1 gatehouse')
  t.equal(response.headers.via, '1.1 gatehouse')
})

t.test('Via sent upstream names the protocol version received: 1.0 for an HTTP/1.0 request', async (t) => {
  const old = await raw('GET /echo/via HTTP/1.0\r\nHost: a.test\r\n')
  t.equal(old.seen?.headers.via, '1.0 gatehouse')
  t.equal(old.response.headers.via, '1.1 gatehouse', 'the answer is HTTP/1.1, from us')
  const chained = await raw('GET /echo/via HTTP/1.0\r\nHost: a.test\r\nVia: 1.0 edge\r\n')
  t.equal(chained.seen?.headers.via, '1.0 edge, 1.0 gatehouse')
})

t.test('client-IP claims never reach the upstream as sent; X-Real-IP is the client IP the gateway decided on', async (t) => {
  const claims = ['Forwarded: for=6.6.6.6', 'X-Real-IP: 6.6.6.6', 'True-Client-IP: 6.6.6.6', 'CF-Connecting-IP: 6.6.6.6',
    'X-Client-IP: 6.6.6.6', 'X-Cluster-Client-IP: 6.6.6.6', 'x-real-ip: 6.6.6.7']
  const { response, seen } = await raw(`GET /echo/ip HTTP/1.1\r\nHost: a.test\r\n${claims.join('\r\n')}\r\nConnection: close\r\n`)
  t.equal(response.statusCode, 200)
  t.equal(seen?.headers['x-real-ip'], '127.0.0.1')
  t.same(seen?.rawHeaders.filter((name) => name.toLowerCase() === 'x-real-ip'), ['x-real-ip'], 'exactly one X-Real-IP')
  for (const name of ['forwarded', 'true-client-ip', 'cf-connecting-ip', 'x-client-ip', 'x-cluster-client-ip']) {
    t.equal(seen?.headers[name], undefined, `${name} dropped`)
  }

  // Behind a trusted proxy, the client IP it reported.
  const trusting = await startGateway(t, { env: { TRUST_PROXY: '1' } })
  await createRoute(trusting.app, { name: 'echo', path: '/echo', targets: [{ url: upstream.url, weight: 1 }] })
  const before = upstream.requests.length
  await rawHttp(trusting.port, 'GET /echo/ip HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 6.6.6.6\r\nConnection: close\r\n\r\n')
  t.equal(upstream.requests.length, before + 1)
  t.equal(last().headers['x-real-ip'], '203.0.113.9')
})

// Response side: an upstream that sends hop-by-hop headers, several cookies, its own request id and Via.
const noisy = await startUpstream(t, (req: IncomingMessage, res: ServerResponse) => {
  req.resume()
  if (req.url === '/noisy/status/204' || req.url === '/noisy/status/304') {
    res.writeHead(Number(req.url.slice(-3)), { etag: '"v1"', 'x-status': 'yes' })
    return res.end()
  }
  if (req.url === '/noisy/head') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '1234' })
    return res.end()
  }
  res.setHeader('connection', 'keep-alive, X-Internal')
  res.setHeader('x-internal', 'secret')
  res.setHeader('keep-alive', 'timeout=5')
  res.setHeader('proxy-authenticate', 'Basic')
  res.setHeader('upgrade', 'h2c')
  res.setHeader('trailer', 'x-t')
  res.setHeader('x_under', '1')
  res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly', 'a=3'])
  res.setHeader('x-request-id', 'upstream-made-this-up')
  res.setHeader('via', '1.1 backend')
  res.setHeader('content-type', 'text/plain')
  res.end('ok')
})
await createRoute(app, { name: 'noisy', path: '/noisy', targets: [{ url: noisy.url, weight: 1 }] })

t.test('response hop-by-hop headers are removed; cookies, Via and the gateway request id come through', async (t) => {
  const response = parseRaw(await rawHttp(port, 'GET /noisy/x HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: client-id-1\r\nConnection: close\r\n\r\n'))
  t.equal(response.statusCode, 200)
  t.equal(response.body, 'ok')
  const names = response.rawHeaders.map(([name]) => name.toLowerCase())
  for (const name of ['x-internal', 'keep-alive', 'proxy-authenticate', 'upgrade', 'trailer', 'x_under']) t.notOk(names.includes(name), name)
  t.same(response.rawHeaders.filter(([name]) => name.toLowerCase() === 'set-cookie').map(([, value]) => value), ['a=1; Path=/', 'b=2; HttpOnly', 'a=3'])
  t.equal(response.headers['x-request-id'], 'client-id-1')
  t.equal(response.headers.via, '1.1 backend, 1.1 gatehouse')
  t.equal(response.headers.connection, 'close')
})

t.test('204, 304 and HEAD answers carry no body; pipelined requests on one connection are all answered in order', async (t) => {
  const pipelined = [
    'GET /noisy/status/204 HTTP/1.1\r\nHost: a.test\r\n\r\n',
    'GET /noisy/status/304 HTTP/1.1\r\nHost: a.test\r\nIf-None-Match: "v1"\r\n\r\n',
    'HEAD /noisy/head HTTP/1.1\r\nHost: a.test\r\n\r\n',
    'GET /echo/after HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'
  ]
  // Pipelined on one kept-alive connection: each answer must end where the next begins. (Regression:
  // a pipelined request's response has no socket yet, which was taken for a client gone → 499.)
  const text = (await rawExchange(port, pipelined.join(''))).text
  const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => Number(match[1]))
  t.same(statuses, [204, 304, 200, 200])
  const parts = text.split(/(?=HTTP\/1\.1 \d{3})/)
  t.equal(parts.length, 4)
  t.match(parts[0], /\r\nx-status: yes\r\n/i)
  t.match(parts[0], /\r\n\r\n$/, '204 has no body')
  t.match(parts[1], /\r\netag: "v1"\r\n/i)
  t.match(parts[1], /\r\n\r\n$/, '304 has no body')
  t.match(parts[2], /\r\ncontent-length: 1234\r\n/i, 'HEAD keeps the upstream Content-Length')
  t.match(parts[2], /\r\n\r\n$/, 'HEAD has no body')
  t.equal(JSON.parse(parseRaw(parts[3]).body).url, '/echo/after')
})

// Bodies: the upstream answers with the sha256 of what it received, followed by a 5 MiB body of its own.
const FIVE_MIB = randomBytes(5 * 1024 * 1024)
const FIVE_MIB_SHA = createHash('sha256').update(FIVE_MIB).digest('hex')
const hasher = await startUpstream(t, (req, res) => {
  const hash = createHash('sha256')
  let size = 0
  req.on('data', (chunk: Buffer) => { hash.update(chunk); size += chunk.length })
  req.on('end', () => {
    const headers: Record<string, string> = {
      'x-received-sha256': hash.digest('hex'),
      'x-received-bytes': String(size),
      'x-received-content-type': req.headers['content-type'] ?? '(none)',
      'x-received-framing': req.headers['content-length'] !== undefined ? `length ${req.headers['content-length']}` : `te ${req.headers['transfer-encoding'] ?? '(none)'}`
    }
    if (req.url?.includes('chunked') !== true) headers['content-length'] = String(FIVE_MIB.length)
    res.writeHead(200, headers)
    // Several writes, so a chunked answer has many chunks.
    for (let at = 0; at < FIVE_MIB.length; at += 256 * 1024) res.write(FIVE_MIB.subarray(at, at + 256 * 1024))
    res.end()
  })
})
await createRoute(app, { name: 'hasher', path: '/hash', bodyLimit: 8 * 1024 * 1024, targets: [{ url: hasher.url, weight: 1 }] })

function sha (body: string | Buffer): string {
  return createHash('sha256').update(typeof body === 'string' ? Buffer.from(body, 'latin1') : body).digest('hex')
}

t.test('a 5 MiB body arrives intact both ways with Content-Length', async (t) => {
  const dispatcher = new Agent()
  t.teardown(() => dispatcher.close())
  const response = await (await import('undici')).request(url + '/hash/length', { method: 'POST', body: FIVE_MIB, dispatcher })
  const received = Buffer.from(await response.body.arrayBuffer())
  t.equal(response.statusCode, 200)
  t.equal(response.headers['x-received-sha256'], FIVE_MIB_SHA)
  t.equal(response.headers['x-received-framing'], `length ${FIVE_MIB.length}`)
  t.equal(response.headers['content-length'], String(FIVE_MIB.length))
  t.equal(sha(received), FIVE_MIB_SHA)
})

t.test('a 5 MiB chunked body arrives intact both ways', async (t) => {
  const dispatcher = new Agent()
  t.teardown(() => dispatcher.close())
  const chunks = function * () { for (let at = 0; at < FIVE_MIB.length; at += 100_000) yield FIVE_MIB.subarray(at, at + 100_000) }
  const response = await (await import('undici')).request(url + '/hash/chunked', { method: 'PUT', body: Readable.from(chunks()), dispatcher })
  const received = Buffer.from(await response.body.arrayBuffer())
  t.equal(response.statusCode, 200)
  t.equal(response.headers['x-received-framing'], 'te chunked')
  t.equal(response.headers['x-received-sha256'], FIVE_MIB_SHA)
  t.equal(response.headers['x-received-bytes'], String(FIVE_MIB.length))
  t.equal(response.headers['transfer-encoding'], 'chunked')
  t.equal(sha(received), FIVE_MIB_SHA)
})

t.test('any content type passes through untouched: multipart, unknown, none, malformed', async (t) => {
  const multipart = '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\xff{"not":"json"\r\n--XyZ--\r\n'
  const cases: Array<[string | null, string]> = [
    ['multipart/form-data; boundary=XyZ', multipart],
    ['application/json', '{"broken": '],
    ['application/x-www-form-urlencoded', 'a=%zz&b'],
    ['text/plain; charset=utf-8', 'plain'],
    ['application/x-unknown-thing', '\x00\x01binary'],
    [null, 'no content type at all'],
    [';;;', 'malformed'],
    ['text', 'no subtype'],
    ['application/json; charset="unterminated', '{}'],
    ['', 'empty content type']
  ]
  for (const [contentType, body] of cases) {
    const head = `POST /hash/length HTTP/1.1\r\nHost: a.test\r\n${contentType === null ? '' : `Content-Type: ${contentType}\r\n`}Content-Length: ${Buffer.byteLength(body, 'latin1')}\r\nConnection: close\r\n\r\n`
    const text = await rawHttp(port, Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body, 'latin1')]))
    const response = parseRaw(text)
    t.equal(response.statusCode, 200, String(contentType))
    t.equal(response.headers['x-received-sha256'], sha(body), String(contentType))
    t.equal(response.headers['x-received-content-type'], contentType ?? '(none)', String(contentType))
  }
})

t.test('a GET or DELETE with a body forwards it too', async (t) => {
  for (const method of ['GET', 'DELETE', 'OPTIONS']) {
    const response = parseRaw(await rawHttp(port, `${method} /hash/length HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`))
    t.equal(response.headers['x-received-sha256'], sha('hello'), method)
  }
})

t.test('Expect: 100-continue is answered by the gateway and not forwarded (curl sends it for bodies > 1 KiB)', async (t) => {
  const before = upstream.requests.length
  const exchange = await rawExchange(port, 'POST /echo/expect HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n', { then: 'hello' })
  t.match(exchange.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/)
  const response = parseRaw(exchange.text.slice(exchange.text.indexOf('HTTP/1.1 200')))
  t.equal(JSON.parse(response.body).body, 'hello')
  t.equal(upstream.requests.length, before + 1)
  t.equal(last().headers.expect, undefined)
})
