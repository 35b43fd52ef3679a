import { createHash } from 'node:crypto'
import { Transform } from 'node:stream'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { RouteStage } from '../../lib/pipeline.js'
import type { Route } from '../../schemas/route.js'
import { GatewayError } from '../../lib/errors.js'
import { adminHeaders, createApiKey, createConsumer, createRoute, failOnUnhandledRejections, httpRequest, startGateway, startUpstream, type TestContext } from '../helper.js'

failOnUnhandledRejections(t)

const ORIGIN = 'https://app.example'

/** A gateway with one route using no policy and one using CORS, api-key auth, a rate limit of 1 per consumer and a 10-byte body limit. */
async function setup (t: TestContext, env: Record<string, string> = {}) {
  const upstream = await startUpstream(t)
  const gateway = await startGateway(t, { env })
  const targets = [{ url: upstream.url, weight: 1 }]
  const bare = await createRoute(gateway.app, { name: 'bare', path: '/bare', targets })
  const guarded = await createRoute(gateway.app, {
    name: 'guarded',
    path: '/guarded',
    targets,
    cors: { origins: [ORIGIN], methods: ['GET', 'POST'], headers: [], exposedHeaders: [], credentials: false, maxAge: 600 },
    auth: { type: 'api-key', header: 'x-api-key' },
    rateLimit: { max: 1, windowMs: 60_000, by: 'consumer' },
    bodyLimit: 10
  })
  return { ...gateway, bare, guarded, upstreamHits: () => upstream.requests.length }
}

/** The live table's copy of a route (the admin API answers with a copy of its own). */
function live (app: FastifyInstance, route: Route): Route {
  const found = app.routeTable.routes.find((candidate) => candidate.id === route.id)
  if (found === undefined) throw new Error(`route ${route.name} is not in the table`)
  return found
}

const stageNames = (app: FastifyInstance, route: Route): string[] => app.routeTable.pipelineOf(live(app, route)).stages.map((stage) => stage.name)

t.test('each route compiles only the stages its fields enable, in the documented order (docs/policies.md)', async (t) => {
  const { app, bare, guarded } = await setup(t)
  t.same(stageNames(app, bare), ['body-limit'])
  t.same(stageNames(app, guarded), ['cors', 'auth', 'rate-limit', 'body-limit'])
  const pipeline = app.routeTable.pipelineOf(live(app, bare))
  t.equal(pipeline.onResponseHead, null, 'no stage of the bare route touches response heads')
  t.equal(pipeline.answersPreflight, false)
})

t.test('gateway-wide defaults (RATE_LIMIT_MAX, CORS_ORIGINS) give every route their stage', async (t) => {
  const { app, bare, guarded } = await setup(t, { RATE_LIMIT_MAX: '100', CORS_ORIGINS: ORIGIN })
  t.same(stageNames(app, bare), ['cors', 'rate-limit', 'body-limit'])
  t.same(stageNames(app, guarded), ['cors', 'auth', 'rate-limit', 'body-limit'])
})

t.test('a proxied request runs its route\'s stages and no other route\'s', async (t) => {
  const { app, url, guarded } = await setup(t)
  // A spy in the (still unused) websocket slot, compiled for the guarded route only.
  const ran: string[] = []
  const spy: RouteStage = { name: 'websocket', onRequest (request, _reply, done) { ran.push(request.url); done() } }
  app.routeTable.addStage('websocket', (route) => route.id === guarded.id ? spy : null)
  t.same(stageNames(app, guarded), ['cors', 'auth', 'rate-limit', 'body-limit', 'websocket'])

  const plain = await httpRequest(`${url}/bare/x`, { headers: { origin: ORIGIN } })
  t.equal(plain.statusCode, 200)
  t.same(ran, [], 'the bare route ran no stage of the guarded one')
  t.equal(plain.headers['access-control-allow-origin'], undefined, 'no CORS stage ran')
  t.equal(plain.headers['x-ratelimit-limit'], undefined, 'no rate-limit stage ran')

  await createConsumer(app, 'alice')
  const alice = await createApiKey(app, 'alice')
  const guardedAnswer = await httpRequest(`${url}/guarded/y`, { headers: { 'x-api-key': alice.key } })
  t.equal(guardedAnswer.statusCode, 200)
  t.same(ran, ['/guarded/y'])
})

t.test('a request failing several stages gets the answer of the first in the documented order (docs/policies.md)', async (t) => {
  const { app, url, upstreamHits } = await setup(t)
  await createConsumer(app, 'alice')
  await createConsumer(app, 'bob')
  const alice = await createApiKey(app, 'alice')
  const bob = await createApiKey(app, 'bob')
  const oversized = { method: 'POST' as const, body: 'x'.repeat(11), headers: { 'content-type': 'text/plain', origin: ORIGIN } }

  // CORS preflight before auth: answered without credentials.
  const preflight = await httpRequest(`${url}/guarded/p`, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST' } })
  t.equal(preflight.statusCode, 204)
  t.equal(preflight.headers['access-control-allow-origin'], ORIGIN)

  // Alice spends her one request; then she fails the rate limit and the body limit at once.
  t.equal((await httpRequest(`${url}/guarded/a`, { headers: { 'x-api-key': alice.key } })).statusCode, 200)

  // Auth before rate limit and body limit: no credentials, too large → 401, with CORS headers.
  const anonymous = await httpRequest(`${url}/guarded/b`, oversized)
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.json().message, 'missing credentials')
  t.equal(anonymous.headers['access-control-allow-origin'], ORIGIN, 'the CORS stage still has the last word on the 401')

  // Rate limit before body limit: limited and too large → 429.
  const limited = await httpRequest(`${url}/guarded/c`, { ...oversized, headers: { ...oversized.headers, 'x-api-key': alice.key } })
  t.equal(limited.statusCode, 429)
  t.match(limited.json().message, /^rate limit of 1 requests exceeded; retry in \d+ s$/)

  // Body limit last: Bob is within his limit, his body is not → 413.
  const large = await httpRequest(`${url}/guarded/d`, { ...oversized, headers: { ...oversized.headers, 'x-api-key': bob.key } })
  t.equal(large.statusCode, 413)
  t.equal(large.json().message, 'request body exceeds the limit of 10 bytes')
  t.equal(large.headers['x-ratelimit-remaining'], '0', 'the rate-limit stage ran (and counted) before the body limit refused')
  t.equal(upstreamHits(), 1, 'only Alice\'s first request was forwarded')

  // Filters (403) before route matching (404) and every route stage.
  const denied = await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload: { action: 'deny', path: '/guarded' } })
  t.equal(denied.statusCode, 201)
  await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload: { action: 'deny', path: '/nowhere' } })
  const filtered = await httpRequest(`${url}/guarded/e`, oversized)
  t.equal(filtered.statusCode, 403)
  t.equal(filtered.headers['access-control-allow-origin'], undefined, 'refused before the route (and its CORS stage) was known')
  t.equal((await httpRequest(`${url}/nowhere`)).statusCode, 403)
  t.equal((await httpRequest(`${url}/elsewhere`)).statusCode, 404)
})

t.test('a stage that cannot compile fails its route closed (503) and leaves the others alone', async (t) => {
  const { app, url, bare, guarded } = await setup(t)
  app.routeTable.addStage('websocket', (route) => {
    if (route.id === guarded.id) throw new Error('broken stage')
    return null
  })
  const refused = await httpRequest(`${url}/guarded/x`)
  t.equal(refused.statusCode, 503, 'not 401: no stage of the route runs')
  t.same(refused.json(), {
    statusCode: 503,
    error: 'Service Unavailable',
    message: 'this route is unavailable: its configuration failed to compile (see the gateway log)',
    requestId: refused.headers['x-request-id']
  })
  t.same(stageNames(app, guarded), [])
  t.equal((await httpRequest(`${url}/bare/x`)).statusCode, 200)
  t.same(stageNames(app, bare), ['body-limit'])
})

t.test('stages change the request going upstream and filter the streamed answer, byte for byte, with backpressure', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    if (req.url === '/moved/big') {
      // 16 MiB in 64 KiB chunks, written as fast as the gateway takes them.
      const chunk = Buffer.alloc(64 * 1024, 'gatehouse ')
      let left = 256
      const more = (): void => {
        while (left > 0) {
          left--
          if (!res.write(chunk)) return void res.once('drain', more)
        }
        res.end()
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(256 * chunk.length) })
      return more()
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ url: req.url, tag: req.headers['x-stage-tag'] ?? null }))
  })
  const { app, url } = await startGateway(t)
  const route = await createRoute(app, { name: 'filtered', path: '/f', stripPath: true, targets: [{ url: upstream.url, weight: 1 }] })
  const bodyBytes: number[] = []
  // A test stage in the one slot no policy fills (WebSocket upgrades are handled at route match; the
  // real transforms and compression are in policies/).
  app.routeTable.addStage('websocket', (compiled) => compiled.id !== route.id
    ? null
    : {
        name: 'websocket',
        onUpstreamRequest (_request, upstreamRequest) {
          if (upstreamRequest.path === '/refuse') return new GatewayError(400, 'GW_TEST_REFUSED', 'refused by a test stage')
          upstreamRequest.path = `/moved${upstreamRequest.path}`
          upstreamRequest.headers.push('x-stage-tag', 'tagged')
          return null
        },
        onResponseHead (_request, head) { head['x-seen-by'] = 'compression' },
        onResponseBody (_request, _statusCode, head) {
          // An upper-casing filter: the length stays, but a real one (compression) would drop it.
          head['content-length'] = undefined
          let count = 0
          return new Transform({
            transform (chunk: Buffer, _encoding, done) { count += chunk.length; done(null, Buffer.from(chunk.toString('latin1').toUpperCase(), 'latin1')) },
            flush (done) { bodyBytes.push(count); done() }
          })
        }
      })

  const small = await httpRequest(`${url}/f/x?q=1`)
  t.equal(small.statusCode, 200)
  t.same(JSON.parse(small.body.toLowerCase()), { url: '/moved/x?q=1', tag: 'tagged' }, 'path rewritten under the query string, header added')
  t.equal(small.headers['x-seen-by'], 'compression')
  t.equal(small.headers['content-length'], undefined)

  const refused = await httpRequest(`${url}/f/refuse`)
  t.equal(refused.statusCode, 400)
  t.equal(refused.json().message, 'refused by a test stage')
  t.equal(upstream.requests.length, 1, 'a refused request never went upstream')

  const big = await httpRequest(`${url}/f/big`)
  t.equal(big.statusCode, 200)
  const expectedHash = createHash('sha256')
  for (let i = 0; i < 256; i++) expectedHash.update(Buffer.alloc(64 * 1024, 'GATEHOUSE '))
  const expected = expectedHash.digest('hex')
  t.equal(createHash('sha256').update(big.body).digest('hex'), expected, '16 MiB filtered byte for byte')
  t.same(bodyBytes.at(-1), 256 * 64 * 1024)
})
