import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  adminHeaders, createApiKey, createConsumer, createRoute, httpRequest, postgresDatabase, startGateway, startUpstream, type TestContext
} from '../helper.js'

interface Answer { status?: number, headers?: Record<string, string | string[] | undefined>, body?: string | Buffer }

/** An upstream answering `body-<n>` (n counts its requests) with the headers `respond` picks per request. */
async function countingUpstream (t: TestContext, respond: (req: IncomingMessage) => Answer = () => ({})) {
  let count = 0
  const upstream = await startUpstream(t, (req: IncomingMessage, res: ServerResponse) => {
    count++
    const answer = respond(req)
    const body = answer.body ?? `body-${count}`
    const headers: Record<string, string | string[] | number> = { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }
    for (const [name, value] of Object.entries(answer.headers ?? {})) if (value !== undefined) headers[name] = value
    res.writeHead(answer.status ?? 200, headers)
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  return { upstream, get count () { return count } }
}

async function cachedGateway (t: TestContext, cache: Record<string, unknown> = {}, respond?: Parameters<typeof countingUpstream>[1], route: Record<string, unknown> = {}) {
  const origin = await countingUpstream(t, respond)
  const gateway = await startGateway(t)
  await createRoute(gateway.app, { name: 'api', path: '/api', targets: [{ url: origin.upstream.url, weight: 1 }], cache, ...route } as never)
  return { gateway, origin }
}

t.test('a GET is stored and served from the cache: MISS then HIT with Age, the upstream asked once', async (t) => {
  const { gateway, origin } = await cachedGateway(t)
  const first = await httpRequest(`${gateway.url}/api/x?b=2&a=1`)
  t.equal(first.statusCode, 200)
  t.equal(first.body, 'body-1')
  t.equal(first.headers['x-cache-status'], 'MISS')
  const second = await httpRequest(`${gateway.url}/api/x?b=2&a=1`, { headers: { 'x-request-id': 'client-id-2' } })
  t.equal(second.statusCode, 200)
  t.equal(second.body, 'body-1')
  t.equal(second.headers['x-cache-status'], 'HIT')
  t.equal(second.headers.age, '0')
  t.equal(second.headers['x-request-id'], 'client-id-2', 'the gateway\'s own request id, never the stored one')
  t.equal(second.headers.via, '1.1 gatehouse')
  t.equal(second.headers['content-type'], 'text/plain')
  t.equal(second.headers['content-length'], '6')
  t.equal(origin.count, 1)
  // The query string as sent is part of the key: another order is another entry.
  t.equal((await httpRequest(`${gateway.url}/api/x?a=1&b=2`)).headers['x-cache-status'], 'MISS')
  // Spellings of one path share the normalised path.
  t.equal((await httpRequest(`${gateway.url}/api//./x?b=2&a=1`)).headers['x-cache-status'], 'HIT')
  t.equal(origin.count, 2)
})

t.test('HEAD is answered from a stored GET; a HEAD miss does not fill the cache', async (t) => {
  const { gateway, origin } = await cachedGateway(t)
  const headMiss = await httpRequest(`${gateway.url}/api/h`, { method: 'HEAD' })
  t.equal(headMiss.headers['x-cache-status'], 'MISS')
  await httpRequest(`${gateway.url}/api/h`)
  const head = await httpRequest(`${gateway.url}/api/h`, { method: 'HEAD' })
  t.equal(head.headers['x-cache-status'], 'HIT')
  t.equal(head.headers['content-length'], '6')
  t.equal(head.body, '')
  t.equal(origin.count, 2)
})

t.test('freshness: s-maxage over max-age over Expires over ttlSeconds', async (t) => {
  const { gateway, origin } = await cachedGateway(t, { ttlSeconds: 0 }, (req) => {
    if (req.url === '/api/smax') return { headers: { 'cache-control': 'max-age=0, s-maxage=60' } }
    if (req.url === '/api/max') return { headers: { 'cache-control': 'max-age=60', expires: new Date(Date.now() - 1000).toUTCString() } }
    if (req.url === '/api/expires') return { headers: { expires: new Date(Date.now() + 60_000).toUTCString(), date: new Date().toUTCString() } }
    if (req.url === '/api/expired') return { headers: { expires: 'Thu, 01 Jan 1970 00:00:00 GMT' } }
    if (req.url === '/api/one') return { headers: { 'cache-control': 'max-age=1' } }
    return {}
  })
  for (const path of ['smax', 'max', 'expires']) {
    await httpRequest(`${gateway.url}/api/${path}`)
    t.equal((await httpRequest(`${gateway.url}/api/${path}`)).headers['x-cache-status'], 'HIT', `${path} is fresh`)
  }
  await httpRequest(`${gateway.url}/api/expired`)
  t.equal((await httpRequest(`${gateway.url}/api/expired`)).headers['x-cache-status'], 'MISS', 'Expires in the past')
  await httpRequest(`${gateway.url}/api/plain`)
  t.equal((await httpRequest(`${gateway.url}/api/plain`)).headers['x-cache-status'], 'MISS', 'ttlSeconds 0 and no header: not stored')
  await httpRequest(`${gateway.url}/api/one`)
  t.equal((await httpRequest(`${gateway.url}/api/one`)).headers['x-cache-status'], 'HIT')
  await sleep(1100)
  const expired = await httpRequest(`${gateway.url}/api/one`)
  t.equal(expired.headers['x-cache-status'], 'MISS', 'expired after max-age')
  t.equal(origin.count, 9)
})

t.test('never stored: no-store, private, Set-Cookie, Vary: *, statuses outside the list', async (t) => {
  const { gateway, origin } = await cachedGateway(t, {}, (req) => {
    switch (req.url) {
      case '/api/no-store': return { headers: { 'cache-control': 'no-store' } }
      case '/api/private': return { headers: { 'cache-control': 'private, max-age=60' } }
      case '/api/cookie': return { headers: { 'set-cookie': `session=${Math.random()}` } }
      case '/api/vary-star': return { headers: { vary: '*' } }
      case '/api/500': return { status: 500 }
      case '/api/302': return { status: 302, headers: { location: '/x' } }
      default: return {}
    }
  })
  for (const path of ['no-store', 'private', 'cookie', 'vary-star', '500', '302']) {
    const first = await httpRequest(`${gateway.url}/api/${path}`)
    const second = await httpRequest(`${gateway.url}/api/${path}`)
    t.equal(second.headers['x-cache-status'], 'MISS', `${path} is not stored`)
    t.not(first.body, second.body)
    if (path === 'cookie') t.not(first.headers['set-cookie'], second.headers['set-cookie'], 'a Set-Cookie answer is never replayed')
  }
  t.equal(origin.count, 12)
})

t.test('request no-cache refreshes the entry, no-store bypasses and drops it; Authorization bypasses', async (t) => {
  const { gateway } = await cachedGateway(t)
  await httpRequest(`${gateway.url}/api/r`)
  const refreshed = await httpRequest(`${gateway.url}/api/r`, { headers: { 'cache-control': 'no-cache' } })
  t.equal(refreshed.headers['x-cache-status'], 'BYPASS')
  t.equal(refreshed.body, 'body-2')
  const hit = await httpRequest(`${gateway.url}/api/r`)
  t.equal(hit.body, 'body-2', 'the no-cache answer replaced the entry')
  t.equal(hit.headers['x-cache-status'], 'HIT')
  const noStore = await httpRequest(`${gateway.url}/api/r`, { headers: { 'cache-control': 'no-store' } })
  t.equal(noStore.headers['x-cache-status'], 'BYPASS')
  t.equal(noStore.body, 'body-3')
  const after = await httpRequest(`${gateway.url}/api/r`)
  t.equal(after.headers['x-cache-status'], 'MISS', 'no-store dropped the entry and stored nothing')
  t.equal(after.body, 'body-4')
  const pragma = await httpRequest(`${gateway.url}/api/r`, { headers: { pragma: 'no-cache' } })
  t.equal(pragma.headers['x-cache-status'], 'BYPASS')
  const withAuthorization = await httpRequest(`${gateway.url}/api/r`, { headers: { authorization: 'Bearer someone' } })
  t.equal(withAuthorization.headers['x-cache-status'], 'BYPASS')
  t.equal(withAuthorization.body, 'body-6')
  t.equal((await httpRequest(`${gateway.url}/api/r`)).body, 'body-5', 'an Authorization answer was not stored')
})

t.test('a successful unsafe request invalidates its URL; a failed one does not', async (t) => {
  const { gateway, origin } = await cachedGateway(t, {}, (req) => req.method === 'DELETE' ? { status: 404 } : {})
  await httpRequest(`${gateway.url}/api/item?id=1`)
  await httpRequest(`${gateway.url}/api/other`)
  t.equal((await httpRequest(`${gateway.url}/api/item?id=1`)).headers['x-cache-status'], 'HIT')
  const post = await httpRequest(`${gateway.url}/api/item?id=1`, { method: 'POST', body: 'x' })
  t.equal(post.headers['x-cache-status'], 'BYPASS')
  t.equal((await httpRequest(`${gateway.url}/api/item?id=1`)).headers['x-cache-status'], 'MISS', 'invalidated')
  t.equal((await httpRequest(`${gateway.url}/api/other`)).headers['x-cache-status'], 'HIT', 'other URLs stay')
  await httpRequest(`${gateway.url}/api/other`, { method: 'DELETE' })
  t.equal((await httpRequest(`${gateway.url}/api/other`)).headers['x-cache-status'], 'HIT', 'a 404 to DELETE invalidates nothing')
  t.equal(origin.count, 5)
})

t.test('Vary: each variant of the named request headers is its own entry; route vary adds headers to the key', async (t) => {
  const { gateway, origin } = await cachedGateway(t, { vary: ['X-Tenant'] }, (req) => ({
    headers: { vary: 'Accept-Language' },
    body: `${String(req.headers['accept-language'])}/${String(req.headers['x-tenant'])}/${Math.random()}`
  }))
  const en = await httpRequest(`${gateway.url}/api/v`, { headers: { 'accept-language': 'en', 'x-tenant': 'a' } })
  const fr = await httpRequest(`${gateway.url}/api/v`, { headers: { 'accept-language': 'fr', 'x-tenant': 'a' } })
  t.equal(fr.headers['x-cache-status'], 'MISS')
  const enAgain = await httpRequest(`${gateway.url}/api/v`, { headers: { 'accept-language': 'en', 'x-tenant': 'a' } })
  t.equal(enAgain.headers['x-cache-status'], 'HIT')
  t.equal(enAgain.body, en.body)
  const frAgain = await httpRequest(`${gateway.url}/api/v`, { headers: { 'accept-language': 'fr', 'x-tenant': 'a' } })
  t.equal(frAgain.body, fr.body)
  const otherTenant = await httpRequest(`${gateway.url}/api/v`, { headers: { 'accept-language': 'en', 'x-tenant': 'b' } })
  t.equal(otherTenant.headers['x-cache-status'], 'MISS')
  t.match(otherTenant.body, /^en\/b\//)
  t.equal(origin.count, 3)
})

t.test('two consumers never see each other\'s entry on an authenticated route', async (t) => {
  const origin = await countingUpstream(t, (req) => ({ body: `for ${String(req.headers['x-consumer-name'])} ${Math.random()}` }))
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'api', path: '/api', targets: [{ url: origin.upstream.url, weight: 1 }], auth: { type: 'api-key', header: 'x-api-key' }, cache: {} } as never)
  await createConsumer(app, 'alice')
  await createConsumer(app, 'bob')
  const alice = (await createApiKey(app, 'alice')).key
  const bob = (await createApiKey(app, 'bob')).key
  const a1 = await httpRequest(`${url}/api/me`, { headers: { 'x-api-key': alice } })
  const b1 = await httpRequest(`${url}/api/me`, { headers: { 'x-api-key': bob } })
  t.match(a1.body, /^for alice/)
  t.match(b1.body, /^for bob/)
  t.equal(b1.headers['x-cache-status'], 'MISS')
  const a2 = await httpRequest(`${url}/api/me`, { headers: { authorization: `Bearer ${alice}` } })
  t.equal(a2.headers['x-cache-status'], 'HIT', 'Authorization on an authenticating route: the consumer is in the key')
  t.equal(a2.body, a1.body)
  const b2 = await httpRequest(`${url}/api/me`, { headers: { 'x-api-key': bob } })
  t.equal(b2.body, b1.body)
  t.equal((await httpRequest(`${url}/api/me`)).statusCode, 401, 'no credentials: refused before the cache')
  t.equal(origin.count, 2)
})

t.test('X-Forwarded-Host from an untrusted client changes neither the key nor the stored answer', async (t) => {
  const { gateway, origin } = await cachedGateway(t, {}, (req) => ({ body: `host=${String(req.headers['x-forwarded-host'])}` }))
  const poisoned = await httpRequest(`${gateway.url}/api/page`, { headers: { 'x-forwarded-host': 'evil.example' } })
  t.equal(poisoned.body, `host=127.0.0.1:${gateway.port}`, 'the upstream never saw the client\'s claim')
  const clean = await httpRequest(`${gateway.url}/api/page`)
  t.equal(clean.headers['x-cache-status'], 'HIT')
  t.equal(clean.body, `host=127.0.0.1:${gateway.port}`)
  t.equal(origin.count, 1)
})

t.test('hosts in the key only when the route lists hosts', async (t) => {
  const origin = await countingUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'api', path: '/api', hosts: ['a.example', 'b.example'], targets: [{ url: origin.upstream.url, weight: 1 }], cache: {} } as never)
  await httpRequest(`${url}/api/x`, { headers: { host: 'a.example' } })
  t.equal((await httpRequest(`${url}/api/x`, { headers: { host: 'b.example' } })).headers['x-cache-status'], 'MISS')
  t.equal((await httpRequest(`${url}/api/x`, { headers: { host: 'a.example' } })).headers['x-cache-status'], 'HIT')
})

t.test('conditional requests a fresh entry satisfies are answered 304 by the gateway', async (t) => {
  const lastModified = new Date(Date.now() - 60_000).toUTCString()
  const { gateway, origin } = await cachedGateway(t, {}, () => ({ headers: { etag: '"v1"', 'last-modified': lastModified, 'cache-control': 'max-age=60' } }))
  await httpRequest(`${gateway.url}/api/c`)
  const byTag = await httpRequest(`${gateway.url}/api/c`, { headers: { 'if-none-match': 'W/"v0", "v1"' } })
  t.equal(byTag.statusCode, 304)
  t.equal(byTag.headers.etag, '"v1"')
  t.equal(byTag.headers['x-cache-status'], 'HIT')
  t.equal(byTag.body, '')
  const otherTag = await httpRequest(`${gateway.url}/api/c`, { headers: { 'if-none-match': '"v2"' } })
  t.equal(otherTag.statusCode, 200)
  const byDate = await httpRequest(`${gateway.url}/api/c`, { headers: { 'if-modified-since': new Date().toUTCString() } })
  t.equal(byDate.statusCode, 304)
  const older = await httpRequest(`${gateway.url}/api/c`, { headers: { 'if-modified-since': new Date(Date.now() - 3_600_000).toUTCString() } })
  t.equal(older.statusCode, 200)
  t.equal(origin.count, 1)
})

t.test('a stale entry with a validator is revalidated: a 304 upstream gives REVALIDATED with the stored body', async (t) => {
  const { gateway, origin } = await cachedGateway(t, {}, (req) => req.headers['if-none-match'] === '"v1"'
    ? { status: 304, headers: { etag: '"v1"', 'cache-control': 'max-age=1' }, body: '' }
    : { headers: { etag: '"v1"', 'cache-control': 'max-age=1' } })
  await httpRequest(`${gateway.url}/api/e`)
  await sleep(1100)
  const revalidated = await httpRequest(`${gateway.url}/api/e`)
  t.equal(revalidated.statusCode, 200)
  t.equal(revalidated.headers['x-cache-status'], 'REVALIDATED')
  t.equal(revalidated.body, 'body-1')
  t.equal(origin.upstream.requests[1].headers['if-none-match'], '"v1"')
  t.equal((await httpRequest(`${gateway.url}/api/e`)).headers['x-cache-status'], 'HIT', 'fresh again after the 304')
  t.equal(origin.count, 2)
})

t.test('staleWhileRevalidateSeconds: STALE at once, one background refresh, then the new answer', async (t) => {
  let delayMs = 0
  const origin = await countingUpstream(t, () => ({ headers: { 'cache-control': 'max-age=1' } }))
  origin.upstream.server.removeAllListeners('request')
  let count = 0
  origin.upstream.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    count++
    const body = `body-${count}`
    setTimeout(() => { res.writeHead(200, { 'cache-control': 'max-age=1', 'content-length': body.length }); res.end(body) }, delayMs)
  })
  const gateway = await startGateway(t)
  await createRoute(gateway.app, { name: 'api', path: '/api', targets: [{ url: origin.upstream.url, weight: 1 }], cache: { staleWhileRevalidateSeconds: 30 } } as never)
  await httpRequest(`${gateway.url}/api/s`)
  await sleep(1100)
  delayMs = 300
  const started = Date.now()
  const stale = await Promise.all([1, 2, 3, 4, 5].map(() => httpRequest(`${gateway.url}/api/s`)))
  t.ok(Date.now() - started < 250, 'stale answers do not wait for the refresh')
  t.same(stale.map((response) => response.headers['x-cache-status']), ['STALE', 'STALE', 'STALE', 'STALE', 'STALE'])
  t.same(stale.map((response) => response.body), ['body-1', 'body-1', 'body-1', 'body-1', 'body-1'])
  await sleep(500)
  t.equal(count, 2, 'one background refresh for five stale answers')
  const fresh = await httpRequest(`${gateway.url}/api/s`)
  t.equal(fresh.headers['x-cache-status'], 'HIT')
  t.equal(fresh.body, 'body-2')
})

t.test('staleIfErrorSeconds: the stale entry answers while the upstream fails', async (t) => {
  let failing = false
  const { gateway, origin } = await cachedGateway(t, { staleIfErrorSeconds: 30 }, () => failing ? { status: 503, body: 'down' } : { headers: { 'cache-control': 'max-age=1' } })
  await httpRequest(`${gateway.url}/api/f`)
  await sleep(1100)
  failing = true
  const stale = await httpRequest(`${gateway.url}/api/f`)
  t.equal(stale.statusCode, 200)
  t.equal(stale.headers['x-cache-status'], 'STALE')
  t.equal(stale.body, 'body-1')
  failing = false
  const fresh = await httpRequest(`${gateway.url}/api/f`)
  t.equal(fresh.headers['x-cache-status'], 'MISS')
  t.equal(fresh.body, 'body-3')
  t.equal(origin.count, 3)
})

t.test('stale-if-error also covers an upstream that is gone', async (t) => {
  const { gateway, origin } = await cachedGateway(t, { staleIfErrorSeconds: 30 }, () => ({ headers: { 'cache-control': 'max-age=1' } }))
  await httpRequest(`${gateway.url}/api/g`)
  await sleep(1100)
  origin.upstream.server.closeAllConnections()
  await new Promise((resolve) => origin.upstream.server.close(resolve))
  const stale = await httpRequest(`${gateway.url}/api/g`)
  t.equal(stale.statusCode, 200)
  t.equal(stale.headers['x-cache-status'], 'STALE')
  t.equal(stale.body, 'body-1')
})

t.test('collapsing: 50 concurrent misses send one upstream request, each waiter with its own request id', async (t) => {
  const origin = await countingUpstream(t)
  origin.upstream.server.removeAllListeners('request')
  let count = 0
  origin.upstream.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    count++
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream-saw': String(req.headers['x-request-id']) })
      res.end('collapsed')
    }, 200)
  })
  const gateway = await startGateway(t)
  await createRoute(gateway.app, { name: 'api', path: '/api', targets: [{ url: origin.upstream.url, weight: 1 }], cache: {} } as never)
  const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => httpRequest(`${gateway.url}/api/c`, { headers: { 'x-request-id': `client-${i}` } })))
  t.equal(count, 1)
  t.same(responses.map((response) => response.body), Array(50).fill('collapsed'))
  t.same(responses.map((response) => response.headers['x-request-id']), Array.from({ length: 50 }, (_, i) => `client-${i}`))
  t.equal(responses.filter((response) => response.headers['x-cache-status'] === 'MISS').length, 1)
  t.equal(responses.filter((response) => response.headers['x-cache-status'] === 'HIT').length, 49)
})

t.test('collapsing: when the answer cannot be stored, waiters go upstream themselves and never get its Set-Cookie', async (t) => {
  let count = 0
  const upstream = await startUpstream(t, (_req, res) => {
    count++
    const mine = count
    setTimeout(() => {
      res.writeHead(200, { 'set-cookie': `session=${mine}` })
      res.end(`answer-${mine}`)
    }, mine === 1 ? 200 : 0)
  })
  const gateway = await startGateway(t)
  await createRoute(gateway.app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], cache: {} } as never)
  const responses = await Promise.all(Array.from({ length: 10 }, () => httpRequest(`${gateway.url}/api/cookie`)))
  t.equal(count, 10)
  for (const response of responses) {
    t.equal(response.headers['set-cookie'], `session=${response.body.slice('answer-'.length)}`, 'each client gets its own answer\'s cookie')
  }
  t.equal(new Set(responses.map((response) => response.body)).size, 10)
})

t.test('collapsing: no wait outlasts the route\'s timeoutMs', async (t) => {
  let count = 0
  const upstream = await startUpstream(t, (_req, res) => {
    count++
    // The first answer takes longer than the route's timeout: its waiters stop waiting and go themselves.
    setTimeout(() => { res.writeHead(200); res.end(`slow-${count}`) }, count === 1 ? 1500 : 0)
  })
  const gateway = await startGateway(t)
  await createRoute(gateway.app, { name: 'api', path: '/api', timeoutMs: 400, targets: [{ url: upstream.url, weight: 1 }], cache: {} } as never)
  const started = Date.now()
  const responses = await Promise.all([1, 2, 3].map(() => httpRequest(`${gateway.url}/api/slow`)))
  t.equal(responses[0].statusCode, 504)
  t.ok(Date.now() - started < 1400, 'waiters stopped waiting after timeoutMs')
})

t.test('bodies are byte-exact: 5 MiB stored, 20 MiB streamed through uncached', async (t) => {
  const five = Buffer.alloc(5 * 1024 * 1024)
  for (let i = 0; i < five.length; i++) five[i] = (i * 31 + 7) & 0xff
  const twenty = Buffer.alloc(20 * 1024 * 1024)
  for (let i = 0; i < twenty.length; i += 4096) twenty[i] = (i / 4096) & 0xff
  const { gateway, origin } = await cachedGateway(t, { maxBodyBytes: 6 * 1024 * 1024 }, (req) => ({ body: req.url === '/api/five' ? five : twenty, headers: { 'content-type': 'application/octet-stream' } }))
  const read = async (path: string) => {
    const { request } = await import('undici')
    const response = await request(`${gateway.url}${path}`)
    return { status: response.headers['x-cache-status'], body: Buffer.from(await response.body.arrayBuffer()) }
  }
  const first = await read('/api/five')
  const second = await read('/api/five')
  t.equal(second.status, 'HIT')
  t.ok(first.body.equals(five) && second.body.equals(five), '5 MiB byte-exact from upstream and from the cache')
  const big = await read('/api/twenty')
  const bigAgain = await read('/api/twenty')
  t.equal(bigAgain.status, 'MISS', 'over maxBodyBytes: not stored')
  t.ok(big.body.equals(twenty) && bigAgain.body.equals(twenty), '20 MiB byte-exact')
  t.equal(origin.count, 3)
  t.ok(gateway.app.cache.memory.bytes < 6 * 1024 * 1024, 'only the 5 MiB answer is held')
})

t.test('the memory store is bounded by CACHE_MEMORY_BYTES, least recently used evicted first', async (t) => {
  const origin = await countingUpstream(t, () => ({ body: 'x'.repeat(10_000) }))
  const gateway = await startGateway(t, { env: { CACHE_MEMORY_BYTES: '40000' } })
  await createRoute(gateway.app, { name: 'api', path: '/api', targets: [{ url: origin.upstream.url, weight: 1 }], cache: {} } as never)
  for (const path of ['a', 'b', 'c']) await httpRequest(`${gateway.url}/api/${path}`)
  t.equal((await httpRequest(`${gateway.url}/api/a`)).headers['x-cache-status'], 'HIT')
  await httpRequest(`${gateway.url}/api/d`)
  t.equal(gateway.app.cache.memory.entries, 3)
  t.ok(gateway.app.cache.memory.bytes <= 40_000)
  t.ok(gateway.app.cache.memory.bytes > 30_000, 'bytes count bodies and headers honestly')
  t.equal((await httpRequest(`${gateway.url}/api/b`)).headers['x-cache-status'], 'MISS', 'b was least recently used')
  t.equal((await httpRequest(`${gateway.url}/api/a`)).headers['x-cache-status'], 'HIT')
})

t.test('DELETE /admin/cache purges all, a route, or a route\'s path prefix; audited; status and metrics count', async (t) => {
  const { gateway } = await cachedGateway(t)
  const app = gateway.app
  const other = await countingUpstream(t)
  await createRoute(app, { name: 'web', path: '/web', targets: [{ url: other.upstream.url, weight: 1 }], cache: {} } as never)
  const fill = async () => {
    for (const path of ['/api/users/1', '/api/users/2', '/api/usersx', '/api/orders/1', '/web/a']) await httpRequest(`${gateway.url}${path}`)
  }
  await fill()
  const prefix = await app.inject({ method: 'DELETE', url: '/admin/cache?route=api&path=/api/users', headers: adminHeaders })
  t.equal(prefix.statusCode, 200)
  t.same(prefix.json(), { purged: 2 })
  t.equal((await httpRequest(`${gateway.url}/api/usersx`)).headers['x-cache-status'], 'HIT', 'prefix on a segment boundary')
  await fill()
  const route = await app.inject({ method: 'DELETE', url: '/admin/cache?route=api', headers: adminHeaders })
  t.same(route.json(), { purged: 4 })
  t.equal((await httpRequest(`${gateway.url}/web/a`)).headers['x-cache-status'], 'HIT')
  await fill()
  const all = await app.inject({ method: 'DELETE', url: '/admin/cache', headers: adminHeaders })
  t.same(all.json(), { purged: 5 })

  t.equal((await app.inject({ method: 'DELETE', url: '/admin/cache?route=nope', headers: adminHeaders })).statusCode, 404)
  const noRoute = await app.inject({ method: 'DELETE', url: '/admin/cache?path=/api', headers: adminHeaders })
  t.equal(noRoute.statusCode, 400)
  t.match(noRoute.json().message, /querystring\/path/)
  const badPath = await app.inject({ method: 'DELETE', url: '/admin/cache?route=api&path=api', headers: adminHeaders })
  t.equal(badPath.statusCode, 400)
  t.match(badPath.json().message, /path/)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/cache?bogus=1', headers: adminHeaders })).statusCode, 400)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/cache' })).statusCode, 401)

  await app.audit.flush()
  const audit = await app.inject({ method: 'GET', url: '/admin/audit/logs?eventType=admin', headers: adminHeaders })
  t.ok(audit.json().items.some((row: any) => row.method === 'DELETE' && row.path === '/admin/cache'), 'purges are audited as admin events')

  const status = await app.inject({ method: 'GET', url: '/admin/status', headers: adminHeaders })
  const cache = status.json().cache
  t.equal(cache.entries, 0)
  t.equal(cache.bytes, 0)
  t.ok(cache.hits >= 2 && cache.misses >= 10)
  const metrics = await app.inject({ method: 'GET', url: '/metrics', headers: adminHeaders })
  t.match(metrics.body, /gatehouse_cache_requests_total\{route="api",status="MISS"\} \d+/)
  t.match(metrics.body, /gatehouse_cache_requests_total\{route="web",status="HIT"\} \d+/)
  t.match(metrics.body, /gatehouse_cache_entries 0/)
})

t.test('answers from the cache are audited with outcome cached and X-Cache-Status in detail', async (t) => {
  const { gateway } = await cachedGateway(t)
  await httpRequest(`${gateway.url}/api/a`)
  const hit = await httpRequest(`${gateway.url}/api/a`)
  await sleep(50)
  await gateway.app.audit.flush()
  const logs = await gateway.app.inject({ method: 'GET', url: '/admin/audit/logs?eventType=request', headers: adminHeaders })
  const rows = logs.json().items
  const row = rows.find((item: any) => item.requestId === hit.headers['x-request-id'])
  t.match(row, { outcome: 'cached', status: 200, detail: 'X-Cache-Status: HIT' })
  t.equal(rows.filter((item: any) => item.outcome === 'proxied').length, 1)
})

t.test('changing or deleting a route purges its entries', async (t) => {
  const { gateway } = await cachedGateway(t)
  await httpRequest(`${gateway.url}/api/a`)
  t.equal(gateway.app.cache.memory.entries, 1)
  const patched = await gateway.app.inject({ method: 'PATCH', url: '/admin/routes/api', headers: adminHeaders, payload: { retries: 2 } })
  t.equal(patched.statusCode, 200)
  await sleep(20)
  t.equal(gateway.app.cache.memory.entries, 0)
  t.equal((await httpRequest(`${gateway.url}/api/a`)).headers['x-cache-status'], 'MISS')
  await gateway.app.inject({ method: 'DELETE', url: '/admin/routes/api', headers: adminHeaders })
  await sleep(20)
  t.equal(gateway.app.cache.memory.entries, 0)
})

for (const database of ['sqlite', 'postgres']) {
  t.test(`a purge reaches another instance on the same database within a second (${database})`, async (t) => {
    const databaseUrl = database === 'postgres' ? await postgresDatabase(t) : undefined
    if (databaseUrl === null) return void t.plan(0, 'PostgreSQL unreachable at 127.0.0.1:5432 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
    const origin = await countingUpstream(t)
    const first = await startGateway(t, { databaseUrl })
    const second = await startGateway(t, { databaseUrl: first.app.config.databaseUrl, build: { migrate: false, configPollIntervalMs: 250 } })
    await createRoute(first.app, { name: 'api', path: '/api', targets: [{ url: origin.upstream.url, weight: 1 }], cache: {} } as never)
    await second.app.configChanges.refresh()
    await httpRequest(`${second.url}/api/a`)
    t.equal((await httpRequest(`${second.url}/api/a`)).headers['x-cache-status'], 'HIT')
    const purged = await first.app.inject({ method: 'DELETE', url: '/admin/cache', headers: adminHeaders })
    t.same(purged.json(), { purged: 0 }, 'the first instance held nothing itself')
    const started = Date.now()
    while (second.app.cache.memory.entries > 0 && Date.now() - started < 1000) await sleep(20)
    t.equal(second.app.cache.memory.entries, 0, 'purged on the other instance')
    t.equal((await httpRequest(`${second.url}/api/a`)).headers['x-cache-status'], 'MISS')
    // A second purge is a new row: it reaches the other instance too.
    t.equal((await httpRequest(`${second.url}/api/a`)).headers['x-cache-status'], 'HIT')
    await first.app.inject({ method: 'DELETE', url: '/admin/cache?route=api', headers: adminHeaders })
    const again = Date.now()
    while (second.app.cache.memory.entries > 0 && Date.now() - again < 1000) await sleep(20)
    t.equal(second.app.cache.memory.entries, 0)
  })
}

t.test('route field cache: defaults, validation naming the field, redis without REDIS_URL refused', async (t) => {
  const { gateway } = await cachedGateway(t)
  const route = await gateway.app.inject({ method: 'GET', url: '/admin/routes/api', headers: adminHeaders })
  t.same(route.json().cache, { ttlSeconds: 60, statuses: [200, 203, 204, 301, 404, 410], maxBodyBytes: 1_048_576, vary: [], staleWhileRevalidateSeconds: 0, staleIfErrorSeconds: 0, store: 'memory' })
  const bad = async (cache: unknown, field: RegExp) => {
    const response = await gateway.app.inject({ method: 'PATCH', url: '/admin/routes/api', headers: adminHeaders, payload: { cache } })
    t.equal(response.statusCode, 400, JSON.stringify(cache))
    t.match(response.json().message, field)
  }
  await bad({ ttlSeconds: -1 }, /cache\/ttlSeconds/)
  await bad({ statuses: [99] }, /cache\/statuses/)
  await bad({ maxBodyBytes: 'big' }, /cache\/maxBodyBytes/)
  await bad({ vary: ['bad header'] }, /cache\/vary/)
  await bad({ store: 'disk' }, /cache\/store/)
  await bad({ unknown: 1 }, /cache/)
  await bad({ store: 'redis' }, /cache\/store "redis" needs REDIS_URL/)
  const off = await gateway.app.inject({ method: 'PATCH', url: '/admin/routes/api', headers: adminHeaders, payload: { cache: null } })
  t.equal(off.json().cache, null)
  t.same(gateway.app.routeTable.pipelineOf(gateway.app.routeTable.routes[0]).stages.map((stage) => stage.name), ['body-limit'], 'cache: null pays nothing')
  const imported = await gateway.app.inject({ method: 'GET', url: '/admin/config', headers: adminHeaders })
  const document = imported.json()
  document.routes[0].cache = { store: 'redis' }
  const put = await gateway.app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: document })
  t.equal(put.statusCode, 400)
  t.match(put.json().message, /routes\/0\/cache\/store/)
})

t.test('every answer of a cached route carries X-Cache-Status, the gateway\'s own refusals too', async (t) => {
  const { gateway } = await cachedGateway(t, {}, undefined, { rateLimit: { max: 1, windowMs: 60_000, by: 'ip' } })
  t.equal((await httpRequest(`${gateway.url}/api/a`)).headers['x-cache-status'], 'MISS')
  const limited = await httpRequest(`${gateway.url}/api/a`)
  t.equal(limited.statusCode, 429)
  t.equal(limited.headers['x-cache-status'], 'BYPASS')
})
