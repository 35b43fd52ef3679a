import { randomBytes } from 'node:crypto'
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { adminHeaders, type TestContext, startGateway, startUpstream, type Upstream } from '../helper.js'

async function startProxy (t: TestContext, env: Record<string, string> = { EGRESS_CACHE: 'true' }): Promise<{ app: FastifyInstance, port: number }> {
  const { app } = await startGateway(t, { env: { EGRESS_AUTH: 'none', ...env }, build: { egress: { connectTimeoutMs: 2000, dnsTimeoutMs: 2000 } } })
  await app.egress.listen(0, '127.0.0.1')
  // Loopback destinations are refused unless an allow rule's cidr names them.
  const rule = await app.inject({ method: 'POST', url: '/admin/egress-rules', headers: adminHeaders, payload: { action: 'allow', cidr: '127.0.0.0/8', ports: [], reason: 'test upstreams' } })
  if (rule.statusCode !== 201) throw new Error(`rule not created: ${rule.body}`)
  return { app, port: app.egress.port as number }
}

interface Answer { status: number, headers: IncomingHttpHeaders, body: Buffer }

/** An absolute-form request to the proxy, as curl -x sends it. */
async function through (proxyPort: number, url: string, options: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<Answer> {
  return await new Promise<Answer>((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port: proxyPort, method: options.method ?? 'GET', path: url, headers: { host: new URL(url).host, ...options.headers }, agent: false }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }))
      response.on('error', reject)
    })
    request.on('error', reject)
    request.end(options.body)
  })
}

/** An origin answering each path with what `answers` says for it, counting requests per path. */
async function origin (t: TestContext, answers: Record<string, { headers: Record<string, string | string[]>, body: Buffer | string }>): Promise<Upstream> {
  return await startUpstream(t, (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0]
      const answer = answers[path]
      if (answer === undefined) { res.writeHead(404, { 'cache-control': 'no-store' }); res.end(); return }
      const body = typeof answer.body === 'string' ? answer.body : answer.body
      res.writeHead(200, { 'content-length': Buffer.byteLength(body), ...answer.headers })
      res.end(req.method === 'HEAD' ? undefined : body)
    })
  })
}

const hits = (upstream: Upstream, path: string): number => upstream.requests.filter((request) => request.url.split('?')[0] === path).length

async function egressRows (app: FastifyInstance): Promise<Array<Record<string, unknown>>> {
  await app.audit.flush()
  return (await app.inject({ method: 'GET', url: '/admin/audit/logs?eventType=egress', headers: adminHeaders })).json().items
}

t.test('a cacheable answer fetched twice reaches the origin once and comes back byte-exact with Age and X-Cache-Status', async (t) => {
  const bytes = randomBytes(50_000)
  const upstream = await origin(t, { '/blob': { headers: { 'cache-control': 'max-age=60', 'content-type': 'application/octet-stream', etag: '"b1"' }, body: bytes } })
  const { app, port } = await startProxy(t)
  const url = `http://127.0.0.1:${upstream.port}/blob?v=1`

  const first = await through(port, url)
  t.equal(first.status, 200)
  t.equal(first.headers['x-cache-status'], 'MISS')
  t.ok(first.body.equals(bytes))
  const second = await through(port, url)
  t.equal(second.status, 200)
  t.equal(second.headers['x-cache-status'], 'HIT')
  t.ok(second.body.equals(bytes), 'byte-exact from the cache')
  t.equal(second.headers['content-length'], String(bytes.length))
  t.equal(second.headers.etag, '"b1"')
  t.equal(second.headers['content-type'], 'application/octet-stream')
  t.match(second.headers.age, /^\d+$/)
  t.match(second.headers.via, /gatehouse/)
  t.equal(hits(upstream, '/blob'), 1, 'the origin saw one request')

  // Another query string is another URL; the default port written out is the same URL.
  await through(port, `http://127.0.0.1:${upstream.port}/blob?v=2`)
  t.equal(hits(upstream, '/blob'), 2)

  const rows = await egressRows(app)
  const cached = rows.filter((row) => row.outcome === 'cached')
  t.equal(cached.length, 1, 'the hit is audited with outcome cached')
  t.match(cached[0], { status: 200, method: 'GET', detail: 'X-Cache-Status: HIT' })
  t.equal(rows.filter((row) => row.outcome === 'proxied').length, 2)
  t.ok(app.cache.memory.entries >= 2, 'kept in the response cache memory store')
})

t.test('no-store, private and Set-Cookie answers are never stored; Cache-Control: no-store requests bypass', async (t) => {
  const upstream = await origin(t, {
    '/no-store': { headers: { 'cache-control': 'no-store, max-age=60' }, body: 'a' },
    '/private': { headers: { 'cache-control': 'private, max-age=60' }, body: 'b' },
    '/cookie': { headers: { 'cache-control': 'max-age=60', 'set-cookie': 'session=1' }, body: 'c' },
    '/plain': { headers: { 'cache-control': 'max-age=60' }, body: 'd' }
  })
  const { app, port } = await startProxy(t)
  for (const path of ['/no-store', '/private', '/cookie']) {
    for (let i = 0; i < 2; i++) {
      const answer = await through(port, `http://127.0.0.1:${upstream.port}${path}`)
      t.equal(answer.headers['x-cache-status'], 'MISS', `${path} #${i + 1}`)
    }
    t.equal(hits(upstream, path), 2, `${path} reached the origin each time`)
  }
  t.equal(app.cache.memory.entries, 0)
  const cookie = await through(port, `http://127.0.0.1:${upstream.port}/cookie`)
  t.same(cookie.headers['set-cookie'], ['session=1'], 'Set-Cookie still reaches the client')

  const bypass = await through(port, `http://127.0.0.1:${upstream.port}/plain`, { headers: { 'cache-control': 'no-store' } })
  t.equal(bypass.headers['x-cache-status'], 'BYPASS')
  await through(port, `http://127.0.0.1:${upstream.port}/plain`)
  t.equal(hits(upstream, '/plain'), 2, 'the no-store request stored nothing')
})

t.test('a request with Authorization neither fills nor reads the cache', async (t) => {
  const upstream = await origin(t, { '/me': { headers: { 'cache-control': 'max-age=60' }, body: 'someone' } })
  const { port } = await startProxy(t)
  const url = `http://127.0.0.1:${upstream.port}/me`
  for (let i = 0; i < 2; i++) {
    const answer = await through(port, url, { headers: { authorization: 'Bearer alice' } })
    t.equal(answer.headers['x-cache-status'], 'BYPASS')
  }
  t.equal(hits(upstream, '/me'), 2, 'not stored')
  await through(port, url)
  const stored = await through(port, url)
  t.equal(stored.headers['x-cache-status'], 'HIT')
  const withAuth = await through(port, url, { headers: { authorization: 'Bearer bob' } })
  t.equal(withAuth.headers['x-cache-status'], 'BYPASS', 'a stored answer is not served to an Authorization request')
  t.equal(hits(upstream, '/me'), 4)
})

t.test('Vary: one entry per value of the named request header', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    const body = `hello in ${String(req.headers['accept-language'])}`
    res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  const { port } = await startProxy(t)
  const url = `http://127.0.0.1:${upstream.port}/greeting`
  const en1 = await through(port, url, { headers: { 'accept-language': 'en' } })
  const fr1 = await through(port, url, { headers: { 'accept-language': 'fr' } })
  const en2 = await through(port, url, { headers: { 'accept-language': 'en' } })
  const fr2 = await through(port, url, { headers: { 'accept-language': 'fr' } })
  t.same([en1.headers['x-cache-status'], fr1.headers['x-cache-status'], en2.headers['x-cache-status'], fr2.headers['x-cache-status']], ['MISS', 'MISS', 'HIT', 'HIT'])
  t.equal(en2.body.toString(), 'hello in en')
  t.equal(fr2.body.toString(), 'hello in fr')
  t.equal(upstream.requests.length, 2)
})

t.test('HEAD is answered from a stored GET; a HEAD miss stores nothing', async (t) => {
  const upstream = await origin(t, {
    '/page': { headers: { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }, body: 'twelve bytes' },
    '/other': { headers: { 'cache-control': 'max-age=60' }, body: 'x' }
  })
  const { port } = await startProxy(t)
  await through(port, `http://127.0.0.1:${upstream.port}/page`)
  const head = await through(port, `http://127.0.0.1:${upstream.port}/page`, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.headers['x-cache-status'], 'HIT')
  t.equal(head.headers['content-length'], '12')
  t.equal(head.body.length, 0)
  t.equal(hits(upstream, '/page'), 1)

  const headMiss = await through(port, `http://127.0.0.1:${upstream.port}/other`, { method: 'HEAD' })
  t.equal(headMiss.headers['x-cache-status'], 'MISS')
  const get = await through(port, `http://127.0.0.1:${upstream.port}/other`)
  t.equal(get.headers['x-cache-status'], 'MISS', 'the HEAD answer was not stored as the GET one')
  t.equal(get.body.toString(), 'x')
})

t.test('an answer over 1 MiB streams through whole and is not stored', async (t) => {
  const big = randomBytes(3 * 1024 * 1024)
  const upstream = await startUpstream(t, (req, res) => {
    // Chunked (no Content-Length): the bound is found while streaming.
    res.writeHead(200, { 'cache-control': 'max-age=60' })
    let at = 0
    const write = (): void => {
      while (at < big.length) {
        const more = res.write(big.subarray(at, at + 65_536))
        at += 65_536
        if (!more) { res.once('drain', write); return }
      }
      res.end()
    }
    write()
  })
  const { app, port } = await startProxy(t)
  const url = `http://127.0.0.1:${upstream.port}/big`
  for (let i = 0; i < 2; i++) {
    const answer = await through(port, url)
    t.equal(answer.headers['x-cache-status'], 'MISS')
    t.ok(answer.body.equals(big), 'every byte arrived')
  }
  t.equal(upstream.requests.length, 2)
  t.equal(app.cache.memory.entries, 0)
  t.equal(app.cache.memory.bytes, 0)
})

t.test('a successful POST to a URL makes its stored answer go', async (t) => {
  const upstream = await origin(t, { '/item': { headers: { 'cache-control': 'max-age=60' }, body: 'v' } })
  const { port } = await startProxy(t)
  const url = `http://127.0.0.1:${upstream.port}/item`
  await through(port, url)
  t.equal((await through(port, url)).headers['x-cache-status'], 'HIT')
  const post = await through(port, url, { method: 'POST', body: 'change', headers: { 'content-type': 'text/plain' } })
  t.equal(post.headers['x-cache-status'], 'BYPASS')
  t.equal((await through(port, url)).headers['x-cache-status'], 'MISS')
  t.equal(hits(upstream, '/item'), 3)
})

t.test('EGRESS_CACHE=false (the default) stores nothing and adds no X-Cache-Status', async (t) => {
  const upstream = await origin(t, { '/blob': { headers: { 'cache-control': 'max-age=60' }, body: 'same' } })
  const { app, port } = await startProxy(t, {})
  for (let i = 0; i < 2; i++) {
    const answer = await through(port, `http://127.0.0.1:${upstream.port}/blob`)
    t.equal(answer.body.toString(), 'same')
    t.equal(answer.headers['x-cache-status'], undefined)
  }
  t.equal(hits(upstream, '/blob'), 2)
  t.equal(app.cache.memory.entries, 0)
  t.notOk((await egressRows(app)).some((row) => row.outcome === 'cached'))
})

t.test('a conditional request a fresh entry satisfies gets 304 from the cache; a no-cache request refreshes the entry', async (t) => {
  let version = 1
  const upstream = await startUpstream(t, (req, res) => {
    const body = `version ${version}`
    res.writeHead(200, { 'cache-control': 'max-age=60', etag: `"v${version}"`, 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  const { app, port } = await startProxy(t)
  const url = `http://127.0.0.1:${upstream.port}/doc`
  await through(port, url)
  const conditional = await through(port, url, { headers: { 'if-none-match': 'W/"v1"' } })
  t.equal(conditional.status, 304)
  t.equal(conditional.headers['x-cache-status'], 'HIT')
  t.equal(conditional.headers.etag, '"v1"')
  t.equal(conditional.body.length, 0)
  const other = await through(port, url, { headers: { 'if-none-match': '"v0"' } })
  t.equal(other.status, 200, 'a tag that does not match gets the stored answer')
  t.equal(other.body.toString(), 'version 1')
  t.equal(upstream.requests.length, 1)

  version = 2
  const refresh = await through(port, url, { headers: { 'cache-control': 'no-cache' } })
  t.equal(refresh.headers['x-cache-status'], 'BYPASS')
  t.equal(refresh.body.toString(), 'version 2')
  const after = await through(port, url)
  t.equal(after.headers['x-cache-status'], 'HIT')
  t.equal(after.body.toString(), 'version 2', 'the no-cache request replaced the entry')
  t.equal(upstream.requests.length, 2)
  t.ok((await egressRows(app)).some((row) => row.outcome === 'cached' && row.status === 304))
})
