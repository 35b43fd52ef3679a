import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { adminHeaders, createRoute, echo, httpRequest, startGateway, startUpstream, type TestContext } from '../helper.js'

const APP = 'https://app.example.com'
const EVIL = 'https://evil.example.net'

function preflight (origin: string, method = 'POST', headers: Record<string, string> = {}) {
  return { method: 'OPTIONS' as const, headers: { origin, 'access-control-request-method': method, ...headers } }
}

/** An upstream that also sets its own CORS and Vary headers, which the gateway's policy must override. */
function upstreamWithCors (req: IncomingMessage, res: ServerResponse): void {
  res.setHeader('access-control-allow-origin', '*')
  res.setHeader('vary', 'Accept-Encoding')
  echo(req, res)
}

async function setup (t: TestContext, env: Record<string, string> = {}) {
  const upstream = await startUpstream(t, upstreamWithCors)
  const gateway = await startGateway(t, { env })
  const targets = [{ url: upstream.url, weight: 1 }]
  await createRoute(gateway.app, {
    name: 'strict',
    path: '/strict',
    methods: ['GET', 'POST'],
    targets,
    cors: { origins: [APP], methods: ['GET', 'POST'], headers: ['x-custom', 'content-type'], exposedHeaders: ['x-total'], credentials: true, maxAge: 300 }
  })
  await createRoute(gateway.app, { name: 'any', path: '/any', targets, cors: { origins: ['*'], methods: ['GET'], headers: [], exposedHeaders: [], credentials: false, maxAge: 600 } })
  await createRoute(gateway.app, { name: 'plain', path: '/plain', targets })
  await createRoute(gateway.app, { name: 'getonly', path: '/getonly', methods: ['GET'], targets })
  return { ...gateway, upstream }
}

t.test('a preflight from an allowed origin is answered by the gateway with the policy and never forwarded', async (t) => {
  const { url, upstream } = await setup(t)
  const response = await httpRequest(`${url}/strict/items`, preflight(APP, 'POST', { 'access-control-request-headers': 'x-custom' }))
  t.equal(response.statusCode, 204)
  t.equal(response.headers['access-control-allow-origin'], APP)
  t.equal(response.headers['access-control-allow-methods'], 'GET, POST')
  t.equal(response.headers['access-control-allow-headers'], 'x-custom, content-type')
  t.equal(response.headers['access-control-allow-credentials'], 'true')
  t.equal(response.headers['access-control-max-age'], '300')
  t.equal(response.headers.vary, 'Origin')
  t.equal(response.body, '')
  t.equal(upstream.requests.length, 0)
})

t.test('a preflight from another origin gets no Access-Control-Allow-Origin and is not forwarded', async (t) => {
  const { url, upstream } = await setup(t)
  const response = await httpRequest(`${url}/strict/items`, preflight(EVIL))
  t.equal(response.statusCode, 204)
  t.equal(response.headers['access-control-allow-origin'], undefined)
  t.equal(response.headers['access-control-allow-methods'], undefined)
  t.equal(response.headers['access-control-allow-credentials'], undefined)
  t.equal(response.headers.vary, 'Origin')
  const lookalike = await httpRequest(`${url}/strict/items`, preflight(`${APP}.evil.net`))
  t.equal(lookalike.headers['access-control-allow-origin'], undefined, 'no prefix matching of origins')
  t.equal(upstream.requests.length, 0)
})

t.test('an actual request from an allowed origin gets the policy headers, overriding the upstream\'s; Vary is merged', async (t) => {
  const { url, upstream } = await setup(t)
  const response = await httpRequest(`${url}/strict/items`, { headers: { origin: APP } })
  t.equal(response.statusCode, 200)
  t.equal(response.headers['access-control-allow-origin'], APP)
  t.equal(response.headers['access-control-allow-credentials'], 'true')
  t.equal(response.headers['access-control-expose-headers'], 'x-total')
  t.equal(response.headers.vary, 'Accept-Encoding, Origin')
  t.equal(upstream.requests.length, 1)
})

t.test('an actual request from a disallowed origin is forwarded but gets no Access-Control-Allow-Origin, even if the upstream sent one', async (t) => {
  const { url, upstream } = await setup(t)
  const response = await httpRequest(`${url}/strict/items`, { headers: { origin: EVIL } })
  t.equal(response.statusCode, 200)
  t.equal(response.headers['access-control-allow-origin'], undefined)
  t.equal(response.headers['access-control-allow-credentials'], undefined)
  t.equal(response.headers.vary, 'Accept-Encoding, Origin')
  t.equal(upstream.requests.length, 1)
})

t.test('origins "*" without credentials answers "*"; requested headers are reflected when the policy lists none', async (t) => {
  const { url } = await setup(t)
  const response = await httpRequest(`${url}/any/x`, preflight(EVIL, 'GET', { 'access-control-request-headers': 'x-one, x-two' }))
  t.equal(response.statusCode, 204)
  t.equal(response.headers['access-control-allow-origin'], '*')
  t.equal(response.headers['access-control-allow-headers'], 'x-one, x-two')
  t.equal(response.headers['access-control-allow-credentials'], undefined)
  t.equal(response.headers.vary, 'Origin, Access-Control-Request-Headers')
})

t.test('origins "*" with credentials echoes the origin (browsers refuse "*" with credentials)', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'cred', path: '/cred', targets: [{ url: upstream.url, weight: 1 }], cors: { origins: ['*'], methods: ['GET'], headers: [], exposedHeaders: [], credentials: true, maxAge: 10 } })
  const response = await httpRequest(`${url}/cred`, { headers: { origin: EVIL } })
  t.equal(response.headers['access-control-allow-origin'], EVIL)
  t.equal(response.headers['access-control-allow-credentials'], 'true')
})

t.test('without a route policy or CORS_ORIGINS the gateway adds nothing and forwards OPTIONS', async (t) => {
  const { url, upstream } = await setup(t)
  const response = await httpRequest(`${url}/plain/x`, preflight(APP))
  t.equal(response.statusCode, 200)
  t.equal(upstream.requests.length, 1)
  t.equal(upstream.requests[0].method, 'OPTIONS')
  t.equal(response.headers['access-control-allow-origin'], '*', 'the upstream\'s own header, untouched')
  const notAllowed = await httpRequest(`${url}/getonly/x`, preflight(APP, 'GET'))
  t.equal(notAllowed.statusCode, 404, 'a route that does not accept OPTIONS and has no policy')
  t.equal(upstream.requests.length, 1)
})

t.test('CORS_ORIGINS is the default for routes without a policy; a route policy replaces it', async (t) => {
  const { url, upstream } = await setup(t, { CORS_ORIGINS: 'https://default.example.com' })
  const allowed = await httpRequest(`${url}/plain/x`, preflight('https://default.example.com', 'PUT'))
  t.equal(allowed.statusCode, 204)
  t.equal(allowed.headers['access-control-allow-origin'], 'https://default.example.com')
  t.equal(allowed.headers['access-control-allow-methods'], 'GET, HEAD, POST, PUT, PATCH, DELETE')
  t.equal(allowed.headers['access-control-max-age'], '600')
  const getOnly = await httpRequest(`${url}/getonly/x`, preflight('https://default.example.com', 'GET'))
  t.equal(getOnly.statusCode, 204, 'a route listing only GET still has its preflights answered')
  t.equal(upstream.requests.length, 0)
  const strict = await httpRequest(`${url}/strict/x`, preflight('https://default.example.com'))
  t.equal(strict.headers['access-control-allow-origin'], undefined, 'the route\'s own policy does not include the default origin')
})

t.test('the admin API never answers a preflight permissively, even with CORS_ORIGINS=*', async (t) => {
  const { url } = await setup(t, { CORS_ORIGINS: '*' })
  for (const path of ['/admin/routes', '/admin/filters', '/admin/rate-limits/127.0.0.1', '/admin/nothing']) {
    const anonymous = await httpRequest(`${url}${path}`, preflight(EVIL, 'DELETE', { 'access-control-request-headers': 'authorization' }))
    t.not(anonymous.statusCode, 204, path)
    t.equal(anonymous.headers['access-control-allow-origin'], undefined, path)
    t.equal(anonymous.headers['access-control-allow-methods'], undefined, path)
    const withToken = await httpRequest(`${url}${path}`, { method: 'OPTIONS', headers: { ...adminHeaders, origin: EVIL, 'access-control-request-method': 'DELETE' } })
    t.equal(withToken.headers['access-control-allow-origin'], undefined, `${path} with token`)
  }
  const list = await httpRequest(`${url}/admin/routes`, { headers: { ...adminHeaders, origin: EVIL } })
  t.equal(list.statusCode, 200)
  t.equal(list.headers['access-control-allow-origin'], undefined)
})

t.test('policy headers stay on gateway rejections so browsers can read them', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'limited', path: '/limited', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 1, windowMs: 60_000, by: 'ip' }, cors: { origins: [APP], methods: ['GET'], headers: [], exposedHeaders: [], credentials: false, maxAge: 5 } })
  await httpRequest(`${url}/limited`, { headers: { origin: APP } })
  const refused = await httpRequest(`${url}/limited`, { headers: { origin: APP } })
  t.equal(refused.statusCode, 429)
  t.equal(refused.headers['access-control-allow-origin'], APP)
  t.equal(refused.headers.vary, 'Origin')
})
