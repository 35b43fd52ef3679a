import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import {
  ADMIN_TOKEN, adminHeaders, buildTestApp, createRoute, httpRequest, postgresDatabase, rawHttp, rawStatus,
  startGateway, startUpstream
} from '../helper.js'

const target = { url: 'http://127.0.0.1:9', weight: 1 }
const valid = { name: 'users', path: '/api/users', targets: [target] }

async function post (app: FastifyInstance, payload: unknown) {
  return app.inject({ method: 'POST', url: '/admin/routes', headers: adminHeaders, payload: payload as object })
}

t.test('every invalid field is refused with 400 and a message naming it', async (t) => {
  const app = await buildTestApp(t)
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['name upper case', { name: 'Users' }, 'body/name must match pattern "^[a-z0-9][a-z0-9_-]*$"'],
    ['name starting with "-"', { name: '-users' }, 'body/name must match pattern "^[a-z0-9][a-z0-9_-]*$"'],
    ['name empty', { name: '' }, 'body/name must match pattern "^[a-z0-9][a-z0-9_-]*$"'],
    ['name too long', { name: 'a'.repeat(101) }, 'body/name must be at most 100 characters long'],
    ['path without leading slash', { path: 'api' }, 'body/path must match pattern "^/[^?#\\s\\\\]*$"'],
    ['path with a query', { path: '/api?x=1' }, 'body/path must match pattern "^/[^?#\\s\\\\]*$"'],
    ['path with a backslash', { path: '/api\\x' }, 'body/path must match pattern "^/[^?#\\s\\\\]*$"'],
    ['path with ".."', { path: '/api/../admin' }, 'body/path must not contain "." or ".." segments'],
    ['path with "//"', { path: '/api//x' }, 'body/path must not contain "//"'],
    ['path with an escape of an unreserved character', { path: '/api/%41' }, 'body/path must be written in normalised form: /api/A'],
    ['path with lower-case hex', { path: '/caf%c3%a9' }, 'body/path must be written in normalised form: /caf%C3%A9'],
    ['path with an encoded slash', { path: '/a%2Fb' }, 'body/path is refused: encoded slash or backslash in path'],
    ['path with a malformed escape', { path: '/a%zz' }, 'body/path is refused: malformed percent-escape in path'],
    ['path with raw non-ASCII', { path: '/café' }, 'body/path must percent-encode characters outside RFC 3986 paths: write /caf%C3%A9'],
    ['hosts not an array', { hosts: 'a.example.com' }, 'body/hosts must be an array'],
    ['host with a space', { hosts: ['a b'] }, 'body/hosts/0 must match pattern "^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"'],
    ['host with a port', { hosts: ['a.example.com:80'] }, 'body/hosts/0 must match pattern "^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"'],
    ['unknown method', { methods: ['FETCH'] }, 'body/methods/0 must be one of "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"'],
    ['lower-case method', { methods: ['GET', 'post'] }, 'body/methods/1 must be one of "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"'],
    ['methods not an array', { methods: 'GET' }, 'body/methods must be an array'],
    ['targets missing', { targets: undefined }, 'body/targets is required'],
    ['targets empty', { targets: [] }, 'body/targets must have at least 1 item'],
    ['target not http(s)', { targets: [{ url: 'ftp://127.0.0.1:21' }] }, 'body/targets/0/url must match pattern "^https?://[^/?#\\s]+(/[^?#\\s]*)?$"'],
    ['target with a query', { targets: [{ url: 'http://127.0.0.1:9/?x=1' }] }, 'body/targets/0/url must match pattern "^https?://[^/?#\\s]+(/[^?#\\s]*)?$"'],
    ['target with credentials', { targets: [target, { url: 'http://user:secret@127.0.0.1:9001' }] }, 'body/targets/1/url must not contain credentials'],
    ['target listed twice', { targets: [target, { url: target.url, weight: 2 }] }, 'body/targets must not list the same url twice'],
    ['target with an unparsable host', { targets: [{ url: 'http://[zz' }] }, 'body/targets/0/url is not a valid URL'],
    ['target weight 0', { targets: [{ url: target.url, weight: 0 }] }, 'body/targets/0/weight must be >= 1'],
    ['target weight too large', { targets: [{ url: target.url, weight: 1001 }] }, 'body/targets/0/weight must be <= 1000'],
    ['target weight fractional', { targets: [{ url: target.url, weight: 1.5 }] }, 'body/targets/0/weight must be an integer'],
    ['target with an unknown field', { targets: [{ url: target.url, priority: 1 }] }, 'body/targets/0/priority is not a known field'],
    ['loadBalancing unknown', { loadBalancing: 'random' }, 'body/loadBalancing must be one of "round-robin", "least-connections"'],
    ['healthCheck a string', { healthCheck: '/health' }, 'body/healthCheck must be an object or null'],
    ['healthCheck path relative', { healthCheck: { path: 'health' } }, 'body/healthCheck/path must match pattern "^/"'],
    ['healthCheck interval too short', { healthCheck: { path: '/health', intervalMs: 10 } }, 'body/healthCheck/intervalMs must be >= 100'],
    ['healthCheck unknown field', { healthCheck: { path: '/health', method: 'HEAD' } }, 'body/healthCheck/method is not a known field'],
    ['timeoutMs 0', { timeoutMs: 0 }, 'body/timeoutMs must be >= 1'],
    ['timeoutMs over an hour', { timeoutMs: 3_600_001 }, 'body/timeoutMs must be <= 3600000'],
    ['timeoutMs a numeric string', { timeoutMs: '5000' }, 'body/timeoutMs must be an integer'],
    ['retries negative', { retries: -1 }, 'body/retries must be >= 0'],
    ['retries null', { retries: null }, 'body/retries must be an integer'],
    ['retries over 10', { retries: 11 }, 'body/retries must be <= 10'],
    ['bodyLimit negative', { bodyLimit: -1 }, 'body/bodyLimit must be >= 0'],
    ['bodyLimit a float', { bodyLimit: 1.5 }, 'body/bodyLimit must be an integer'],
    ['stripPath a string', { stripPath: 'true' }, 'body/stripPath must be a boolean'],
    ['preserveHost a number', { preserveHost: 1 }, 'body/preserveHost must be a boolean'],
    ['enabled null', { enabled: null }, 'body/enabled must be a boolean'],
    ['auth type unknown', { auth: { type: 'oauth' } }, 'body/auth/type must be one of "none", "api-key", "basic", "jwt"'],
    ['auth a string', { auth: 'none' }, 'body/auth must be an object'],
    ['auth none with a field of api-key', { auth: { type: 'none', header: 'x-key' } }, 'body/auth/header is not a known field'],
    ['api-key header with a space', { auth: { type: 'api-key', header: 'x key' } }, 'body/auth/header must match pattern "^[A-Za-z0-9-]+$"'],
    ['basic realm with a quote', { auth: { type: 'basic', realm: 'a"b' } }, 'body/auth/realm must match pattern "^[^"\\\\\\r\\n]*$"'],
    ['jwt with neither secret nor jwksUrl', { auth: { type: 'jwt' } }, 'body/auth must set exactly one of secret or jwksUrl'],
    ['jwt with both secret and jwksUrl', { auth: { type: 'jwt', secret: 's'.repeat(32), jwksUrl: 'https://id.example.com/jwks' } }, 'body/auth must set exactly one of secret or jwksUrl'],
    ['jwt secret too short', { auth: { type: 'jwt', secret: 'short' } }, 'body/auth/secret must be at least 32 characters long'],
    ['jwt jwksUrl not http(s)', { auth: { type: 'jwt', jwksUrl: 'file:///etc/keys' } }, 'body/auth/jwksUrl must match pattern "^https?://"'],
    ['jwt empty consumerClaim', { auth: { type: 'jwt', secret: 's'.repeat(32), consumerClaim: '' } }, 'body/auth/consumerClaim must be at least 1 characters long'],
    ['jwt unknown field', { auth: { type: 'jwt', secret: 's'.repeat(32), algorithm: 'none' } }, 'body/auth/algorithm is not a known field'],
    ['rateLimit max 0', { rateLimit: { max: 0 } }, 'body/rateLimit/max must be >= 1'],
    ['rateLimit without max', { rateLimit: { windowMs: 1000 } }, 'body/rateLimit/max is required'],
    ['rateLimit by unknown', { rateLimit: { max: 5, by: 'user' } }, 'body/rateLimit/by must be one of "ip", "consumer", "route"'],
    ['rateLimit window too short', { rateLimit: { max: 5, windowMs: 10 } }, 'body/rateLimit/windowMs must be >= 100'],
    ['rateLimit a number', { rateLimit: 100 }, 'body/rateLimit must be an object or null'],
    ['cors without origins', { cors: { credentials: true } }, 'body/cors/origins is required'],
    ['cors empty origins', { cors: { origins: [] } }, 'body/cors/origins must have at least 1 item'],
    ['cors origin with a path', { cors: { origins: ['https://app.example.com/x'] } }, 'body/cors/origins/0 must match pattern "^(\\*|https?://[^/\\s]+)$"'],
    ['cors unknown method', { cors: { origins: ['*'], methods: ['TRACE'] } }, 'body/cors/methods/0 must be one of "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"'],
    ['cors maxAge negative', { cors: { origins: ['*'], maxAge: -1 } }, 'body/cors/maxAge must be >= 0'],
    ['cors header with a space', { cors: { origins: ['*'], headers: ['x y'] } }, 'body/cors/headers/0 must match pattern "^[A-Za-z0-9!#$%&\'*+.^`|~-]+$"'],
    ['unknown field', { upstream: 'http://x' }, 'body/upstream is not a known field'],
    ['id given by the client', { id: 'mine' }, 'body/id is not a known field'],
    ['name missing', { name: undefined }, 'body/name is required'],
    ['path missing', { path: undefined }, 'body/path is required']
  ]
  for (const [what, change, message] of cases) {
    const body: Record<string, unknown> = { ...valid, ...change }
    for (const key of Object.keys(change)) if (change[key] === undefined) delete body[key]
    const response = await post(app, body)
    t.equal(response.statusCode, 400, `${what}: status`)
    t.equal(response.json().message, message, `${what}: message`)
    t.equal(response.json().error, 'Bad Request', `${what}: error`)
    t.match(response.json().requestId, /^[0-9a-f-]{36}$/, `${what}: requestId`)
  }
  const list = await app.inject({ url: '/admin/routes', headers: adminHeaders })
  t.same(list.json(), { items: [], total: 0 }, 'nothing was stored')
})

t.test('non-JSON, missing and non-object bodies are refused', async (t) => {
  const app = await buildTestApp(t)
  const send = (payload: string | undefined, contentType?: string) => app.inject({
    method: 'POST',
    url: '/admin/routes',
    headers: contentType === undefined ? adminHeaders : { ...adminHeaders, 'content-type': contentType },
    payload
  })
  let response = await send('{"name": "users",', 'application/json')
  t.equal(response.statusCode, 400)
  t.equal(response.json().message, "Body is not valid JSON but content-type is set to 'application/json'")
  response = await send(undefined)
  t.equal(response.statusCode, 400)
  t.equal(response.json().message, 'body is required: send a JSON object')
  response = await send('', 'application/json')
  t.equal(response.statusCode, 400)
  t.equal(response.json().message, 'body is required: send a JSON object')
  response = await send('{"__proto__": {"admin": true}}', 'application/json')
  t.equal(response.statusCode, 400, 'prototype poisoning is refused')
  response = await send(JSON.stringify([valid]), 'application/json')
  t.equal(response.statusCode, 400)
  t.equal(response.json().message, 'body must be an object')
  response = await send('null', 'application/json')
  t.equal(response.statusCode, 400)
  t.equal(response.json().message, 'body is required: send a JSON object')
  response = await send('name=users&path=/api', 'application/x-www-form-urlencoded')
  t.equal(response.statusCode, 415)
  t.equal(response.json().error, 'Unsupported Media Type')
  response = await send(JSON.stringify(valid), 'text/plain')
  t.equal(response.statusCode, 415, 'text/plain is not read as JSON either')
})

t.test('PUT and PATCH bodies are validated the same way', async (t) => {
  const app = await buildTestApp(t)
  await createRoute(app, valid)
  const cases: Array<['PUT' | 'PATCH', unknown, string]> = [
    ['PUT', { ...valid, retries: 'x' }, 'body/retries must be an integer'],
    ['PUT', { name: 'users', path: '/api' }, 'body/targets is required'],
    ['PATCH', { targets: [] }, 'body/targets must have at least 1 item'],
    ['PATCH', { name: 'Users' }, 'body/name must match pattern "^[a-z0-9][a-z0-9_-]*$"'],
    ['PATCH', { nmae: 'x' }, 'body/nmae is not a known field'],
    ['PATCH', { auth: { type: 'jwt' } }, 'body/auth must set exactly one of secret or jwksUrl'],
    ['PATCH', { path: '/a/./b' }, 'body/path must not contain "." or ".." segments'],
    ['PATCH', { hosts: null }, 'body/hosts must be an array'],
    ['PATCH', [], 'body must be an object']
  ]
  for (const [method, payload, message] of cases) {
    const response = await app.inject({ method, url: '/admin/routes/users', headers: adminHeaders, payload: payload as object })
    t.equal(response.statusCode, 400, `${method} ${JSON.stringify(payload)}`)
    t.equal(response.json().message, message)
  }
  const stored = await app.inject({ url: '/admin/routes/users', headers: adminHeaders })
  t.equal(stored.json().retries, 1, 'the stored route is unchanged')
})

t.test('a route has every default filled in', async (t) => {
  const app = await buildTestApp(t, { env: { UPSTREAM_TIMEOUT_MS: '1234', BODY_LIMIT: '999' } })
  const route = await createRoute(app, { ...valid, healthCheck: { path: '/up' } as never, rateLimit: { max: 5 } as never, cors: { origins: ['*'] } as never, auth: { type: 'api-key' } as never })
  const { id, createdAt, updatedAt, ...rest } = route
  t.match(id, /^[0-9a-f-]{36}$/)
  t.equal(createdAt, updatedAt)
  t.same(rest, {
    name: 'users',
    path: '/api/users',
    hosts: [],
    methods: [],
    stripPath: false,
    preserveHost: false,
    targets: [target],
    loadBalancing: 'round-robin',
    healthCheck: { path: '/up', intervalMs: 5000, timeoutMs: 2000, healthyThreshold: 1, unhealthyThreshold: 2 },
    timeoutMs: 1234,
    retries: 1,
    bodyLimit: 999,
    auth: { type: 'api-key', header: 'x-api-key' },
    rateLimit: { max: 5, windowMs: 60000, by: 'ip' },
    cors: { origins: ['*'], methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], headers: [], exposedHeaders: [], credentials: false, maxAge: 600 },
    requestHeaders: null,
    responseHeaders: null,
    rewrite: null,
    compression: null,
    securityHeaders: false,
    cache: null,
    enabled: true,
    httpsRedirect: false,
    upstreamTls: null,
    websocket: false
  })
  const jwt = await createRoute(app, { name: 'jwt', path: '/jwt', targets: [target], auth: { type: 'jwt', jwksUrl: 'https://id.example.com/jwks' } as never })
  t.same(jwt.auth, { type: 'jwt', secret: null, secretSet: false, jwksUrl: 'https://id.example.com/jwks', consumerClaim: 'sub' })
})

async function crud (t: Test, databaseUrl: string | undefined): Promise<void> {
  const app = await buildTestApp(t, { databaseUrl })
  const created = await post(app, valid)
  t.equal(created.statusCode, 201)
  const route = created.json()
  t.equal(created.headers.location, `/admin/routes/${route.id}`)
  t.equal(created.headers['x-request-id'], created.headers['x-request-id'])

  const byId = await app.inject({ url: `/admin/routes/${route.id}`, headers: adminHeaders })
  t.equal(byId.statusCode, 200)
  t.same(byId.json(), route)
  const byName = await app.inject({ url: '/admin/routes/users', headers: adminHeaders })
  t.same(byName.json(), route, 'a route is found by its name too')

  const replaced = await app.inject({ method: 'PUT', url: '/admin/routes/users', headers: adminHeaders, payload: { name: 'people', path: '/api/people', targets: [{ url: 'http://127.0.0.1:10' }], retries: 3 } })
  t.equal(replaced.statusCode, 200)
  t.equal(replaced.json().id, route.id, 'replace keeps the id')
  t.equal(replaced.json().createdAt, route.createdAt, 'replace keeps createdAt')
  t.equal(replaced.json().name, 'people')
  t.equal(replaced.json().retries, 3)
  t.equal(replaced.json().stripPath, false, 'omitted fields are reset to defaults by PUT')

  const patched = await app.inject({ method: 'PATCH', url: `/admin/routes/${route.id}`, headers: adminHeaders, payload: { stripPath: true, hosts: ['api.example.com'] } })
  t.equal(patched.statusCode, 200)
  t.equal(patched.json().stripPath, true)
  t.same(patched.json().hosts, ['api.example.com'])
  t.equal(patched.json().retries, 3, 'PATCH keeps fields it does not name')
  t.equal(patched.json().name, 'people')

  const second = await createRoute(app, { name: 'orders', path: '/orders', targets: [target] })
  const list = await app.inject({ url: '/admin/routes', headers: adminHeaders })
  t.equal(list.statusCode, 200)
  t.same(list.json().items.map((item: { name: string }) => item.name), ['people', 'orders'])
  t.equal(list.json().total, 2)

  const clash = await post(app, { ...valid, name: 'orders' })
  t.equal(clash.statusCode, 409)
  t.equal(clash.json().message, 'route name "orders" is already taken')
  const renameClash = await app.inject({ method: 'PATCH', url: '/admin/routes/people', headers: adminHeaders, payload: { name: 'orders' } })
  t.equal(renameClash.statusCode, 409, 'PATCH to a taken name')
  const replaceClash = await app.inject({ method: 'PUT', url: '/admin/routes/people', headers: adminHeaders, payload: { ...valid, name: 'orders' } })
  t.equal(replaceClash.statusCode, 409, 'PUT to a taken name')
  const sameName = await app.inject({ method: 'PUT', url: '/admin/routes/orders', headers: adminHeaders, payload: { ...valid, name: 'orders' } })
  t.equal(sameName.statusCode, 200, 'a route may keep its own name')

  const deleted = await app.inject({ method: 'DELETE', url: `/admin/routes/${second.id}`, headers: adminHeaders })
  t.equal(deleted.statusCode, 204)
  t.equal(deleted.body, '')
  for (const method of ['GET', 'PUT', 'PATCH', 'DELETE'] as const) {
    const response = await app.inject({ method, url: `/admin/routes/${second.id}`, headers: adminHeaders, payload: method === 'PUT' ? valid : method === 'PATCH' ? { retries: 1 } : undefined })
    t.equal(response.statusCode, 404, `${method} of a deleted route`)
    t.equal(response.json().message, `route ${second.id} not found`)
  }
  t.same((await app.inject({ url: '/admin/routes', headers: adminHeaders })).json().total, 1)
  t.same(app.routeTable.routes.map((r) => r.name), ['people'], 'the running table follows every change')
}

t.test('create, read, replace, merge and delete by id or name (SQLite)', async (t) => {
  await crud(t, undefined)
})

t.test('create, read, replace, merge and delete by id or name (PostgreSQL)', async (t) => {
  const databaseUrl = await postgresDatabase(t)
  if (databaseUrl === null) return void t.plan(0, 'PostgreSQL unreachable at 127.0.0.1:5432 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  await crud(t, databaseUrl)
})

t.test('lists page with limit (default 100, max 1000) and offset, with the total', async (t) => {
  const app = await buildTestApp(t)
  for (let i = 0; i < 105; i++) await createRoute(app, { name: `r${String(i).padStart(3, '0')}`, path: `/r${i}`, targets: [target] })
  const first = (await app.inject({ url: '/admin/routes', headers: adminHeaders })).json()
  t.equal(first.items.length, 100)
  t.equal(first.total, 105)
  t.equal(first.items[0].name, 'r000')
  const page = (await app.inject({ url: '/admin/routes?limit=10&offset=100', headers: adminHeaders })).json()
  t.same(page.items.map((item: { name: string }) => item.name), ['r100', 'r101', 'r102', 'r103', 'r104'])
  t.equal(page.total, 105)
  t.equal((await app.inject({ url: '/admin/routes?limit=1000', headers: adminHeaders })).json().items.length, 105)
  const beyond = (await app.inject({ url: '/admin/routes?offset=500', headers: adminHeaders })).json()
  t.same(beyond, { items: [], total: 105 })
  for (const [query, message] of [
    ['limit=1001', 'querystring/limit must be <= 1000'],
    ['limit=0', 'querystring/limit must be >= 1'],
    ['offset=-1', 'querystring/offset must be >= 0'],
    ['limit=ten', 'querystring/limit must be integer'],
    ['sort=name', 'querystring/sort is not a known query parameter']
  ]) {
    const response = await app.inject({ url: `/admin/routes?${query}`, headers: adminHeaders })
    t.equal(response.statusCode, 400, query)
    t.equal(response.json().message, message)
  }
})

t.test('PATCH replaces nested objects whole and fills their defaults', async (t) => {
  const app = await buildTestApp(t)
  await createRoute(app, { ...valid, rateLimit: { max: 5, windowMs: 1000, by: 'route' }, retries: 4, hosts: ['a.example.com'] })
  const response = await app.inject({ method: 'PATCH', url: '/admin/routes/users', headers: adminHeaders, payload: { rateLimit: { max: 9 } } })
  t.equal(response.statusCode, 200)
  t.same(response.json().rateLimit, { max: 9, windowMs: 60000, by: 'ip' })
  t.equal(response.json().retries, 4)
  t.same(response.json().hosts, ['a.example.com'])
  const cleared = await app.inject({ method: 'PATCH', url: '/admin/routes/users', headers: adminHeaders, payload: { rateLimit: null } })
  t.equal(cleared.json().rateLimit, null)
  const empty = await app.inject({ method: 'PATCH', url: '/admin/routes/users', headers: adminHeaders, payload: {} })
  t.equal(empty.statusCode, 200, 'an empty patch changes nothing')
  t.equal(empty.json().retries, 4)
})

t.test('missing, wrong and duplicate admin tokens', async (t) => {
  const { url, port } = await startGateway(t)
  const missing = await httpRequest(`${url}/admin/routes`)
  t.equal(missing.statusCode, 401)
  t.match(missing.headers['www-authenticate'], /^Bearer( |$)/)
  t.equal(missing.json().message, 'missing admin bearer token')
  t.equal(missing.json().requestId, missing.headers['x-request-id'])
  for (const authorization of [`Bearer ${ADMIN_TOKEN}x`, `Basic ${ADMIN_TOKEN}`, ADMIN_TOKEN, 'Bearer ', `Bearer ${ADMIN_TOKEN.slice(0, -1)}`]) {
    const wrong = await httpRequest(`${url}/admin/routes`, { headers: { authorization } })
    t.equal(wrong.statusCode, 401, `refused: ${authorization}`)
    t.match(wrong.headers['www-authenticate'], /^Bearer/)
    t.equal(wrong.json().message, 'invalid admin bearer token')
  }
  const lowerScheme = await httpRequest(`${url}/admin/routes`, { headers: { authorization: `bearer ${ADMIN_TOKEN}` } })
  t.equal(lowerScheme.statusCode, 200, 'the scheme is case-insensitive')

  const duplicate = await rawHttp(port, `GET /admin/routes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nAuthorization: Bearer wrong\r\nConnection: close\r\n\r\n`)
  t.equal(rawStatus(duplicate), 400)
  t.match(duplicate, /"message":"duplicate authorization header"/)
  const duplicateReversed = await rawHttp(port, `GET /admin/routes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nConnection: close\r\n\r\n`)
  t.equal(rawStatus(duplicateReversed), 400)
})

t.test('unknown /admin and /docs paths answer 404 JSON and are never proxied', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'everything', path: '/', targets: [{ url: upstream.url, weight: 1 }] })
  const proxied = await httpRequest(`${url}/anything`)
  t.equal(proxied.statusCode, 200, 'the catch-all route proxies other paths')
  const before = upstream.requests.length

  for (const path of ['/admin', '/admin/', '/admin/nope', '/admin/routes/x/y', '/admin/status-of-nothing?x=1']) {
    const anonymous = await httpRequest(`${url}${path}`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
    t.equal(anonymous.statusCode, 401, `${path} without a token`)
    const response = await httpRequest(`${url}${path}`, { headers: adminHeaders })
    t.equal(response.statusCode, 404, `${path} with a token`)
    t.equal(response.json().message, `no admin endpoint GET ${path.split('?')[0]}`)
    t.equal(response.json().requestId, response.headers['x-request-id'])
  }
  for (const path of ['/docs/nope', '/docs/json/x', '/docs/static/nope']) {
    const response = await httpRequest(`${url}${path}`)
    t.equal(response.statusCode, 404, path)
    t.equal(response.headers['content-type'], 'application/json; charset=utf-8')
  }
  t.equal(upstream.requests.length, before, 'the upstream saw none of them')
})

t.test('an admin CORS preflight gets no permissive headers', async (t) => {
  const { url } = await startGateway(t, { env: { CORS_ORIGINS: '*' } })
  const preflight = { origin: 'https://evil.example.com', 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization' }
  for (const headers of [preflight, { ...preflight, ...adminHeaders }]) {
    for (const path of ['/admin/routes', '/admin/routes/x', '/admin/config']) {
      const response = await httpRequest(`${url}${path}`, { method: 'OPTIONS', headers })
      t.not(response.statusCode, 204, `${path}: no preflight success`)
      const cors = Object.keys(response.headers).filter((name) => name.startsWith('access-control-'))
      t.same(cors, [], `${path}: no access-control-* headers (${'authorization' in headers ? 'with' : 'without'} token)`)
    }
  }
  const get = await httpRequest(`${url}/admin/routes`, { headers: { ...adminHeaders, origin: 'https://evil.example.com' } })
  t.equal(get.statusCode, 200)
  t.equal(get.headers['access-control-allow-origin'], undefined, 'nor on a simple request')
})

t.test('admin changes take effect on the very next proxied request', async (t) => {
  const one = await startUpstream(t, (_req, res) => res.end('one'))
  const two = await startUpstream(t, (_req, res) => res.end('two'))
  const { url } = await startGateway(t)
  const admin = (method: string, path: string, body?: unknown) => httpRequest(`${url}/admin/routes${path}`, {
    method: method as never,
    headers: { ...adminHeaders, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  t.equal((await httpRequest(`${url}/svc/x`)).statusCode, 404)
  t.equal((await admin('POST', '', { name: 'svc', path: '/svc', targets: [{ url: one.url }] })).statusCode, 201)
  t.equal((await httpRequest(`${url}/svc/x`)).body, 'one', 'created')
  t.equal((await admin('PATCH', '/svc', { targets: [{ url: two.url }] })).statusCode, 200)
  t.equal((await httpRequest(`${url}/svc/x`)).body, 'two', 'patched')
  t.equal((await admin('PATCH', '/svc', { enabled: false })).statusCode, 200)
  t.equal((await httpRequest(`${url}/svc/x`)).statusCode, 404, 'disabled')
  t.equal((await admin('PUT', '/svc', { name: 'svc', path: '/other', targets: [{ url: one.url }] })).statusCode, 200)
  t.equal((await httpRequest(`${url}/svc/x`)).statusCode, 404, 'replaced: old path gone')
  t.equal((await httpRequest(`${url}/other/x`)).body, 'one', 'replaced: new path live')
  t.equal((await admin('DELETE', '/svc')).statusCode, 204)
  t.equal((await httpRequest(`${url}/other/x`)).statusCode, 404, 'deleted')
})

t.test('every change is written to the audit log as an admin event with before and after', async (t) => {
  const app = await buildTestApp(t)
  const route = await createRoute(app, valid)
  await app.inject({ method: 'PATCH', url: '/admin/routes/users', headers: adminHeaders, payload: { retries: 2 } })
  await app.inject({ method: 'DELETE', url: '/admin/routes/users', headers: adminHeaders })
  await app.inject({ method: 'POST', url: '/admin/routes', headers: adminHeaders, payload: { ...valid, name: 'Bad' } })
  await app.audit.flush()
  const rows = await app.db.selectFrom('audit_log').selectAll().where('event_type', '=', 'admin').orderBy('id').execute()
  t.same(rows.map((row) => [row.method, row.path, row.outcome, row.route_id]), [
    ['POST', '/admin/routes', 'admin', route.id],
    ['PATCH', '/admin/routes/users', 'admin', route.id],
    ['DELETE', '/admin/routes/users', 'admin', route.id]
  ], 'one row per change; a refused request changes nothing')
  const details = rows.map((row) => JSON.parse(row.detail as string))
  t.same(details.map((d) => d.action), ['create', 'update', 'delete'])
  t.equal(details[0].before, null)
  t.equal(details[0].after.name, 'users')
  t.equal(details[1].before.retries, 1)
  t.equal(details[1].after.retries, 2)
  t.equal(details[2].after, null)
})
