import { connect } from 'node:net'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { request as undiciRequest } from 'undici'
import { compressedOnce } from '../../policies/compression/stage.js'
import type { RouteStage } from '../../lib/pipeline.js'
import { createRoute, failOnUnhandledRejections, httpRequest, startGateway, startUpstream } from '../helper.js'

failOnUnhandledRejections(t)

/** Compressible but not trivial: JSON-ish lines with counters. */
function textBody (bytes: number): Buffer {
  const lines: string[] = []
  let length = 0
  for (let i = 0; length < bytes; i++) {
    const line = `{"id":${i},"name":"item-${i % 97}","tags":["a${i % 7}","b${i % 13}"],"price":${(i * 37) % 1000}.${i % 100}}\n`
    lines.push(line)
    length += line.length
  }
  return Buffer.from(lines.join('')).subarray(0, bytes)
}

const BODY = textBody(200_000)

/** A raw response: status, headers, and the body bytes as received (undici would not decode them either). */
async function get (url: string, headers: Record<string, string> = {}, method = 'GET') {
  const response = await undiciRequest(url, { method: method as 'GET', headers })
  const body = Buffer.from(await response.body.arrayBuffer())
  return { statusCode: response.statusCode, headers: response.headers, body }
}

function decode (encoding: unknown, body: Buffer): Buffer {
  if (encoding === 'gzip') return gunzipSync(body)
  if (encoding === 'br') return brotliDecompressSync(body)
  if (encoding === undefined) return body
  throw new Error(`unexpected encoding ${String(encoding)}`)
}

async function setup (t: Test, compression: object = {}) {
  const upstream = await startUpstream(t, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const headers: Record<string, string | number> = { 'content-type': url.searchParams.get('type') ?? 'application/json', etag: '"v1"', vary: 'Origin' }
    const size = Number(url.searchParams.get('size') ?? BODY.length)
    const body = BODY.subarray(0, size)
    if (url.searchParams.has('length')) headers['content-length'] = body.length
    if (url.searchParams.has('encoded')) headers['content-encoding'] = 'gzip'
    if (url.searchParams.has('cc')) headers['cache-control'] = url.searchParams.get('cc') as string
    if (url.searchParams.has('range')) {
      res.writeHead(206, { ...headers, 'content-range': `bytes 0-99/${body.length}`, 'content-length': 100 })
      return res.end(body.subarray(0, 100))
    }
    res.writeHead(200, headers)
    if (req.method === 'HEAD') return res.end()
    // In pieces, as a real upstream streams.
    let at = 0
    const next = (): void => {
      if (at >= body.length) return void res.end()
      const piece = body.subarray(at, at + 16_384)
      at += piece.length
      if (res.write(piece)) setImmediate(next)
      else res.once('drain', next)
    }
    next()
  })
  const gateway = await startGateway(t)
  await createRoute(gateway.app, { name: 'c', path: '/c', targets: [{ url: upstream.url, weight: 1 }], compression } as never)
  return { ...gateway, upstream }
}

t.test('gzip and br: decoded byte for byte; Content-Length dropped, Vary merged with the upstream\'s, strong ETag weakened', async (t) => {
  const { url } = await setup(t)
  for (const [accept, expected] of [['gzip', 'gzip'], ['br', 'br'], ['gzip, deflate, br', 'br'], ['br;q=0.5, gzip', 'gzip'], ['*', 'br'], ['x-gzip', 'gzip']]) {
    const response = await get(`${url}/c/data?length=1`, { 'accept-encoding': accept })
    t.equal(response.headers['content-encoding'], expected, accept)
    t.equal(response.headers['content-length'], undefined)
    t.equal(response.headers.vary, 'Origin, Accept-Encoding')
    t.equal(response.headers.etag, 'W/"v1"')
    t.ok(decode(expected, response.body).equals(BODY), `${accept}: the body, byte for byte`)
    t.ok(response.body.length < BODY.length / 3, `${expected} compressed ${BODY.length} to ${response.body.length}`)
  }
})

t.test('the route\'s order breaks q-value ties; q=0 refuses', async (t) => {
  const { url } = await setup(t, { encodings: ['gzip', 'br'] })
  t.equal((await get(`${url}/c/x`, { 'accept-encoding': 'br, gzip' })).headers['content-encoding'], 'gzip')
  t.equal((await get(`${url}/c/x`, { 'accept-encoding': 'br;q=1, gzip;q=0.9' })).headers['content-encoding'], 'br')
  t.equal((await get(`${url}/c/x`, { 'accept-encoding': 'gzip;q=0, br;q=0' })).headers['content-encoding'], undefined)
})

t.test('every exclusion: the answer goes out as the upstream sent it', async (t) => {
  const { url } = await setup(t, { minBytes: 1000, types: ['application/json', 'text/*'] })
  const accept = { 'accept-encoding': 'gzip, br' }
  const cases: Array<[string, string, Record<string, string>, string?]> = [
    ['no Accept-Encoding', '/c/x', {}],
    ['identity only', '/c/x', { 'accept-encoding': 'identity' }],
    ['already encoded', '/c/x?encoded=1', accept],
    ['206 with Content-Range', '/c/x?range=1', accept],
    ['Cache-Control: no-transform from the upstream', '/c/x?cc=public,%20no-transform', accept],
    ['Cache-Control: no-transform from the client', '/c/x', { ...accept, 'cache-control': 'no-transform' }],
    ['text/event-stream', '/c/x?type=text/event-stream', accept],
    ['a type outside types', '/c/x?type=image/png', accept],
    ['a declared length under minBytes', '/c/x?length=1&size=999', accept],
    ['HEAD', '/c/x?length=1', accept, 'HEAD']
  ]
  for (const [name, path, headers, method] of cases) {
    const response = await get(`${url}${path}`, headers, method)
    t.equal(response.headers['content-encoding'], path.includes('encoded') ? 'gzip' : undefined, name)
    t.not(response.headers.etag, 'W/"v1"', `${name}: ETag untouched`)
    if (method === 'HEAD') t.equal(response.headers['content-length'], String(BODY.length), 'HEAD keeps the upstream\'s length')
    else if (path.includes('range')) t.ok(response.body.equals(BODY.subarray(0, 100)), `${name}: the range as sent`)
    else if (!path.includes('encoded')) t.ok(response.body.equals(BODY.subarray(0, path.includes('size=999') ? 999 : BODY.length)), `${name}: the body as sent`)
  }
  const small = await get(`${url}/c/x?size=10`, { 'accept-encoding': 'gzip' })
  t.equal(small.headers['content-encoding'], 'gzip', 'without a declared length the answer is compressed whatever its size')
  t.equal(decode('gzip', small.body).toString(), BODY.subarray(0, 10).toString())
  // A compressible answer varies on Accept-Encoding even for a client that gets it as it is.
  t.equal((await get(`${url}/c/x`)).headers.vary, 'Origin, Accept-Encoding')
})

t.test('SSE through a compressing route still streams event by event', async (t) => {
  let sendNext: (() => void) | null = null
  const upstream = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    let n = 0
    sendNext = () => {
      n++
      if (n > 3) return void res.end()
      res.write(`id: ${n}\ndata: event ${n}\n\n`)
    }
    sendNext()
  })
  const { app, port } = await startGateway(t)
  await createRoute(app, { name: 'sse', path: '/sse', targets: [{ url: upstream.url, weight: 1 }], compression: { encodings: ['gzip'], minBytes: 0, types: ['text/*'] } } as never)
  // A raw socket: each event must arrive before the upstream sends the next one.
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.write('GET /sse HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nAccept: text/event-stream\r\n\r\n')
  let received = ''
  const waitFor = async (text: string): Promise<void> => await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`"${text}" did not arrive; got ${JSON.stringify(received)}`)), 5000)
    const check = (): void => {
      if (!received.includes(text)) return
      clearTimeout(timer)
      socket.off('data', onData)
      resolve()
    }
    const onData = (chunk: Buffer): void => { received += chunk.toString('latin1'); check() }
    socket.on('data', onData)
    check()
  })
  await waitFor('data: event 1\n\n')
  t.notMatch(received, /content-encoding/i, 'not compressed')
  t.match(received, /content-type: text\/event-stream/i)
  for (const n of [2, 3]) {
    (sendNext as unknown as () => void)()
    await waitFor(`data: event ${n}\n\n`)
    t.pass(`event ${n} arrived on its own`)
  }
})

t.test('a Buffer answer the gateway sends itself (a cache hit) is compressed once per encoding and reused', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  const stored = BODY.subarray(0, 50_000)
  const route = await createRoute(app, { name: 'hit', path: '/hit', targets: [{ url: upstream.url, weight: 1 }], compression: { encodings: ['br', 'gzip'], minBytes: 100, types: ['application/json'] } } as never)
  // A stand-in for the response cache: answers every request from the same stored Buffer.
  let hits = 0
  const hit: RouteStage = {
    name: 'cache',
    onRequest (_request, reply) {
      hits++
      reply.header('content-type', 'application/json').header('etag', '"s1"').header('x-cache-status', 'HIT').send(stored)
    }
  }
  app.routeTable.addStage('cache', (candidate) => candidate.id === route.id ? hit : null)
  const first = await get(`${url}/hit`, { 'accept-encoding': 'gzip' })
  const second = await get(`${url}/hit`, { 'accept-encoding': 'gzip' })
  const brotli = await get(`${url}/hit`, { 'accept-encoding': 'br' })
  const plain = await get(`${url}/hit`)
  const head = await get(`${url}/hit`, { 'accept-encoding': 'gzip' }, 'HEAD')
  t.equal(hits, 5)
  t.equal(upstream.requests.length, 0)
  for (const [name, response, encoding] of [['first', first, 'gzip'], ['second', second, 'gzip'], ['br', brotli, 'br'], ['plain', plain, undefined]] as const) {
    t.equal(response.headers['content-encoding'], encoding, name)
    t.ok(decode(encoding, response.body).equals(stored), `${name}: byte for byte`)
    t.equal(response.headers['content-length'], String(response.body.length), `${name}: the length of what was sent`)
    t.equal(response.headers.vary, 'Accept-Encoding')
    t.equal(response.headers.etag, encoding === undefined ? '"s1"' : 'W/"s1"')
    t.match(response.headers['server-timing'], /^gateway;dur=/)
  }
  t.equal(head.headers['content-encoding'], undefined, 'HEAD: not compressed')
  t.ok(first.body.equals(second.body))
  // The memo: the variant the hits were served from is the one kept for this Buffer.
  const kept = compressedOnce(stored, 'gzip')
  t.equal(kept, compressedOnce(stored, 'gzip'), 'one compression per Buffer and encoding')
  t.ok((await kept).equals(first.body), 'the hits got the kept variant')
  t.notOk((await compressedOnce(Buffer.from(stored), 'gzip')) === (await kept), 'another Buffer is another entry')
  // Gateway errors (JSON strings) are left alone.
  const small = await httpRequest(`${url}/nowhere`, { headers: { 'accept-encoding': 'gzip' } })
  t.equal(small.headers['content-encoding'], undefined)
})

t.test('a client that goes away mid-answer leaves the gateway serving', async (t) => {
  const { url, port } = await setup(t)
  await new Promise<void>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('data', () => { socket.destroy(); resolve() })
    socket.on('error', reject)
    socket.write('GET /c/x HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n')
  })
  const after = await get(`${url}/c/x`, { 'accept-encoding': 'br' })
  t.equal(after.statusCode, 200)
  t.ok(decode('br', after.body).equals(BODY))
})
