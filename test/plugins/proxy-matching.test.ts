import t, { type Test } from 'tap'
import { adminHeaders, createRoute, httpRequest, rawHttp, startGateway, startUpstream, type HttpResponse, type Upstream, failOnUnhandledRejections } from '../helper.js'
import { parseRaw, type RawResponse } from './proxy-raw.js'

failOnUnhandledRejections(t)

// One gateway and one upstream per route name: the upstream answers with its own name,
// so every assertion says exactly which route was chosen.
const upstreams = new Map<string, Upstream>()
async function upstreamNamed (name: string): Promise<Upstream> {
  const upstream = await startUpstream(t, (req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name })
      res.end(`${name} ${req.method} ${req.url}`)
    })
  })
  upstreams.set(name, upstream)
  return upstream
}

const { app, url, port } = await startGateway(t)

async function route (name: string, path: string, fields: Record<string, unknown> = {}): Promise<void> {
  const upstream = upstreams.get(name) ?? await upstreamNamed(name)
  await createRoute(app, { name, path, targets: [{ url: upstream.url, weight: 1 }], ...fields })
}

function assertNoRoute (t: Test, response: HttpResponse): void {
  t.equal(response.statusCode, 404)
  t.match(response.headers['content-type'], /^application\/json/)
  const body = response.json()
  t.same(body, { statusCode: 404, error: 'Not Found', message: 'no route matches this request', requestId: response.headers['x-request-id'] })
  t.match(body.requestId, /^[0-9a-f-]{36}$/)
}

await route('api', '/api')
await route('users', '/api/users')
await route('user-7', '/api/users/7/')
await route('host-any', '/h')
await route('host-wild', '/h', { hosts: ['*.example.com'] })
await route('host-exact', '/h', { hosts: ['api.example.com', 'Other.Example.org'] })
await route('writes', '/m/items', { methods: ['POST', 'PUT'] })
await route('reads', '/m', { methods: ['GET'] })
await route('off', '/off', { enabled: false })
await route('long-other-host', '/api/users/admin', { hosts: ['internal.test'] })

async function get (path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<HttpResponse> {
  return await httpRequest(url + path, { method: method as 'GET', headers })
}

t.test('matches a route path only on a segment boundary', async (t) => {
  t.equal((await get('/api')).body, 'api GET /api')
  t.equal((await get('/api/')).body, 'api GET /api/')
  t.equal((await get('/api/x')).body, 'api GET /api/x')
  assertNoRoute(t, await get('/apix'))
  assertNoRoute(t, await get('/ap'))
})

t.test('the longest matching route path wins', async (t) => {
  t.equal((await get('/api/users')).body, 'users GET /api/users')
  t.equal((await get('/api/users/8?x=1')).body, 'users GET /api/users/8?x=1')
  t.equal((await get('/api/usersx')).body, 'api GET /api/usersx')
  t.equal((await get('/api/users/7/orders')).body, 'user-7 GET /api/users/7/orders')
})

t.test('a route path with a trailing slash also matches the path without it', async (t) => {
  t.equal((await get('/api/users/7')).body, 'user-7 GET /api/users/7')
  t.equal((await get('/api/users/7/')).body, 'user-7 GET /api/users/7/')
  t.equal((await get('/api/users/70')).body, 'users GET /api/users/70')
})

t.test('exact hosts beat wildcard hosts beat none, whatever the case and port', async (t) => {
  t.equal((await get('/h', { host: 'api.example.com' })).headers['x-upstream'], 'host-exact')
  t.equal((await get('/h', { host: 'API.Example.COM:8443' })).headers['x-upstream'], 'host-exact')
  t.equal((await get('/h', { host: 'other.example.org.' })).headers['x-upstream'], 'host-exact')
  t.equal((await get('/h', { host: 'www.example.com' })).headers['x-upstream'], 'host-wild')
  t.equal((await get('/h/x', { host: 'a.b.EXAMPLE.com:80' })).headers['x-upstream'], 'host-wild')
  t.equal((await get('/h', { host: 'example.com' })).headers['x-upstream'], 'host-any', 'the wildcard does not cover the bare domain')
  t.equal((await get('/h', { host: 'notexample.com' })).headers['x-upstream'], 'host-any')
  t.equal((await get('/h')).headers['x-upstream'], 'host-any')
})

t.test('a longer route for another host does not hide a shorter route for this one', async (t) => {
  t.equal((await get('/api/users/admin/x')).headers['x-upstream'], 'users')
  t.equal((await get('/api/users/admin/x', { host: 'internal.test' })).headers['x-upstream'], 'long-other-host')
})

t.test('a method the route does not list falls through to shorter paths, finally to 404 JSON', async (t) => {
  t.equal((await get('/m/items/1', {}, 'POST')).body, 'writes POST /m/items/1')
  t.equal((await get('/m/items/1', {}, 'PUT')).body, 'writes PUT /m/items/1')
  t.equal((await get('/m/items/1')).body, 'reads GET /m/items/1')
  assertNoRoute(t, await get('/m/items/1', {}, 'DELETE'))
  assertNoRoute(t, await get('/m/items/1', {}, 'PATCH'))
  const head = await get('/m/items/1', {}, 'HEAD')
  t.equal(head.statusCode, 404, 'HEAD is not implied by GET')
})

t.test('a disabled route is not matched', async (t) => {
  assertNoRoute(t, await get('/off'))
  t.equal(upstreams.get('off')?.requests.length, 0)
})

t.test('paths of reserved endpoints are never proxied, however they are spelled', async (t) => {
  await route('catch-all', '/', { hosts: ['catchall.test'] })
  const catchAll = upstreams.get('catch-all') as Upstream
  // Raw requests: an HTTP client library would resolve the dot segments itself.
  const raw = async (path: string): Promise<RawResponse> => parseRaw(await rawHttp(port, `GET ${path} HTTP/1.1\r\nHost: catchall.test\r\nConnection: close\r\n\r\n`))
  for (const path of ['/x/../admin/routes', '/x/%2e%2e/health', '//ready', '/x/../docs/json', '/metrics/', '/health/', '/x/../metrics']) {
    const response = await raw(path)
    t.equal(response.statusCode, 404, path)
    t.equal(JSON.parse(response.body).requestId, response.headers['x-request-id'], path)
  }
  // Spellings that still start with a reserved segment are answered by that endpoint's own scope.
  t.equal((await raw('/admin/../admin/routes')).statusCode, 401)
  t.equal((await raw('/docs/./json')).statusCode, 404)
  t.equal((await get('/administrator', { host: 'catchall.test' })).body, 'catch-all GET /administrator', 'only whole segments are reserved')
  t.equal((await get('/healthz', { host: 'catchall.test' })).body, 'catch-all GET /healthz')
  t.same(catchAll.requests.map((request) => request.url), ['/administrator', '/healthz'])
})

t.test('a route created, changed and deleted at runtime takes effect on the very next request', async (t) => {
  const first = await upstreamNamed('live-1')
  const second = await upstreamNamed('live-2')
  assertNoRoute(t, await get('/live/x', { host: 'live.test' }))

  const created = await createRoute(app, { name: 'live', path: '/live', hosts: ['live.test'], targets: [{ url: first.url, weight: 1 }] })
  t.equal((await get('/live/x', { host: 'live.test' })).body, 'live-1 GET /live/x')

  const changed = await app.inject({ method: 'PATCH', url: `/admin/routes/${created.id}`, headers: adminHeaders, payload: { targets: [{ url: second.url, weight: 1 }], stripPath: true } })
  t.equal(changed.statusCode, 200)
  t.equal((await get('/live/x', { host: 'live.test' })).body, 'live-2 GET /x')

  const moved = await app.inject({ method: 'PATCH', url: '/admin/routes/live', headers: adminHeaders, payload: { path: '/moved' } })
  t.equal(moved.statusCode, 200)
  assertNoRoute(t, await get('/live/x', { host: 'live.test' }))
  t.equal((await get('/moved/y', { host: 'live.test' })).body, 'live-2 GET /y')

  const disabled = await app.inject({ method: 'PATCH', url: '/admin/routes/live', headers: adminHeaders, payload: { enabled: false } })
  t.equal(disabled.statusCode, 200)
  assertNoRoute(t, await get('/moved/y', { host: 'live.test' }))

  await app.inject({ method: 'PATCH', url: '/admin/routes/live', headers: adminHeaders, payload: { enabled: true } })
  t.equal((await get('/moved/z', { host: 'live.test' })).body, 'live-2 GET /z')
  const deleted = await app.inject({ method: 'DELETE', url: `/admin/routes/${created.id}`, headers: adminHeaders })
  t.equal(deleted.statusCode, 204)
  assertNoRoute(t, await get('/moved/z', { host: 'live.test' }))
  t.equal(first.requests.length, 1)
  t.same(second.requests.map((request) => request.url), ['/x', '/y', '/z'])
})

t.test('a route path with a percent-escape routes what clients send for non-ASCII paths', async (t) => {
  await route('cafe', '/caf%C3%A9')
  for (const path of ['/caf%C3%A9', '/caf%c3%a9/menu', '/x/../caf%C3%A9/menu']) {
    const response = await httpRequest(`${url}${path}`)
    t.equal(response.statusCode, 200, path)
    t.equal(response.headers['x-upstream'], 'cafe', path)
  }
  t.equal((await httpRequest(`${url}/caf%C3%A9/menu`)).body, 'cafe GET /caf%C3%A9/menu', 'forwarded in normalised form')
  assertNoRoute(t, await httpRequest(`${url}/cafe`))
})
