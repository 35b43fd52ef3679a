import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import {
  adminHeaders, createApiKey, createConsumer, createRoute, httpRequest, redisKeyPrefix, startGateway, startUpstream,
  TEST_REDIS_URL, type HttpResponse
} from '../helper.js'

/** docs/policies.md "Bans": a route's rateLimit.banSeconds. */

const from = (ip: string, headers: Record<string, string> = {}) => ({ headers: { 'x-forwarded-for': ip, ...headers } })

async function counters (url: string, ip: string): Promise<any[]> {
  const response = await httpRequest(`${url}/admin/rate-limits/${ip}`, { headers: adminHeaders })
  if (response.statusCode !== 200) throw new Error(`GET rate-limits: ${response.statusCode} ${response.body}`)
  return response.json().items
}

function expectBanned (t: Test, response: HttpResponse, maxSeconds: number, label: string): void {
  t.equal(response.statusCode, 429, `${label}: 429`)
  const retryAfter = Number(response.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= maxSeconds, `${label}: Retry-After ${String(response.headers['retry-after'])} is the rest of the ban (≤ ${maxSeconds})`)
  t.match(response.json().message, /banned for another \d+ s/, `${label}: the message says banned`)
}

t.test('memory store: a key that exceeds the limit is refused for banSeconds whatever the window says; GET shows the ban, DELETE lifts it', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { env: { TRUST_PROXY: '127.0.0.1' } })
  t.equal(app.rateLimits.store, 'memory')
  // A 200 ms window would admit again within half a second; the 3 s ban must not.
  await createRoute(app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 2, windowMs: 200, by: 'ip', banSeconds: 3 } })

  const statuses: number[] = []
  let exceeded: HttpResponse | null = null
  for (let i = 0; i < 3; i++) {
    const response = await httpRequest(`${url}/api/x`, from('198.51.100.7'))
    statuses.push(response.statusCode)
    exceeded = response
  }
  // A request can straddle a 200 ms window boundary: then the third fits and a fourth exceeds.
  while (statuses[statuses.length - 1] === 200 && statuses.length < 10) {
    exceeded = await httpRequest(`${url}/api/x`, from('198.51.100.7'))
    statuses.push(exceeded.statusCode)
  }
  t.equal(statuses[statuses.length - 1], 429, `exceeded after ${statuses.length - 1} admitted`)
  t.equal((exceeded as HttpResponse).headers['retry-after'], '3', 'the first refusal bans for the full 3 s')
  t.equal((exceeded as HttpResponse).headers['x-ratelimit-remaining'], '0')
  const admitted = upstream.requests.length

  await sleep(600)
  const stillBanned = await httpRequest(`${url}/api/x`, from('198.51.100.7'))
  expectBanned(t, stillBanned, 3, 'three windows later')
  t.equal((await httpRequest(`${url}/api/x`, from('198.51.100.8'))).statusCode, 200, 'another client is not banned')
  t.equal(upstream.requests.length, admitted + 1, 'banned requests never reach the upstream')

  const items = await counters(url, '198.51.100.7')
  t.equal(items.length, 1)
  t.equal(items[0].routeName, 'api')
  t.equal(items[0].banSeconds, 3)
  const until = Date.parse(items[0].bannedUntil)
  t.ok(until > Date.now() && until <= Date.now() + 3000, `bannedUntil ${items[0].bannedUntil} is within the 3 s ban`)
  t.same((await counters(url, '198.51.100.8')).map((item) => item.bannedUntil), [null], 'the other client has no ban')

  const lifted = await httpRequest(`${url}/admin/rate-limits/198.51.100.7`, { method: 'DELETE', headers: adminHeaders })
  t.equal(lifted.statusCode, 204)
  t.equal((await httpRequest(`${url}/api/x`, from('198.51.100.7'))).statusCode, 200, 'DELETE lifts the ban at once')
  t.same((await counters(url, '198.51.100.7')).map((item) => item.bannedUntil), [null])
  await app.audit.flush()
  const row = await app.db.selectFrom('audit_log').select(['detail']).where('event_type', '=', 'admin').orderBy('id', 'desc').executeTakeFirstOrThrow()
  t.match(JSON.parse(row.detail as string), { resource: 'rate-limit', before: { bans: 1 } }, 'the audit row counts the lifted ban')
})

t.test('a ban ends by itself after banSeconds; routes without banSeconds and the gateway-wide limit never ban', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { env: { TRUST_PROXY: '127.0.0.1', RATE_LIMIT_MAX: '1', RATE_LIMIT_WINDOW_MS: '300' } })
  const targets = [{ url: upstream.url, weight: 1 }]
  await createRoute(app, { name: 'banning', path: '/banning', targets, rateLimit: { max: 1, windowMs: 60_000, by: 'ip', banSeconds: 1 } })
  await createRoute(app, { name: 'plain', path: '/plain', targets, rateLimit: { max: 1, windowMs: 300, by: 'ip' } })
  await createRoute(app, { name: 'wide', path: '/wide', targets })

  t.same([(await httpRequest(`${url}/banning/x`, from('203.0.113.1'))).statusCode, (await httpRequest(`${url}/banning/x`, from('203.0.113.1'))).statusCode], [200, 429])
  for (const path of ['/plain', '/wide']) {
    const first = await httpRequest(`${url}${path}/x`, from('203.0.113.1'))
    const second = await httpRequest(`${url}${path}/x`, from('203.0.113.1'))
    t.same([first.statusCode, second.statusCode], [200, 429], `${path} limits`)
    t.match(second.json().message, /retry in \d+ s$/, `${path}: a plain refusal, no ban`)
  }
  await sleep(1100)
  // The window (60 s) still holds the one admitted request, so the key is refused again, but
  // by the window (and banned afresh), not by the old ban: Retry-After is a new full ban.
  const after = await httpRequest(`${url}/banning/x`, from('203.0.113.1'))
  t.equal(after.statusCode, 429)
  t.equal(after.headers['retry-after'], '1', 'the old ban ended; exceeding again bans again')
  for (const path of ['/plain', '/wide']) {
    t.equal((await httpRequest(`${url}${path}/x`, from('203.0.113.1'))).statusCode, 200, `${path}: admitted again once the window slid, no ban`)
  }
  const items = await counters(url, '203.0.113.1')
  t.same(items.map((item) => [item.scope, item.routeName, item.banSeconds]).sort(), [['gateway', null, null], ['ip', 'banning', 1], ['ip', 'plain', null]])
})

t.test('a consumer that exceeds its own limit on a banning by-consumer route is banned by the route', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, {
    name: 'keyed',
    path: '/keyed',
    targets: [{ url: upstream.url, weight: 1 }],
    auth: { type: 'api-key', header: 'x-api-key' },
    rateLimit: { max: 100, windowMs: 200, by: 'consumer', banSeconds: 2 }
  })
  await createConsumer(app, 'alice', { max: 1, windowMs: 200 })
  await createConsumer(app, 'bob')
  const alice = await createApiKey(app, 'alice')
  const bob = await createApiKey(app, 'bob')
  const statuses: number[] = []
  for (let i = 0; i < 2; i++) statuses.push((await httpRequest(`${url}/keyed/x`, { headers: { 'x-api-key': alice.key } })).statusCode)
  if (statuses[1] === 200) statuses.push((await httpRequest(`${url}/keyed/x`, { headers: { 'x-api-key': alice.key } })).statusCode)
  t.equal(statuses[statuses.length - 1], 429, 'alice exceeds her own limit of 1')
  await sleep(500)
  const later = await httpRequest(`${url}/keyed/x`, { headers: { 'x-api-key': alice.key } })
  expectBanned(t, later, 2, 'alice after her window slid')
  t.equal((await httpRequest(`${url}/keyed/x`, { headers: { 'x-api-key': bob.key } })).statusCode, 200, 'bob, same IP, is not banned')
})

async function twoOnRedis (t: Test, prefix: string): Promise<{ first: { app: FastifyInstance, url: string }, second: { app: FastifyInstance, url: string }, upstreamUrl: string }> {
  const upstream = await startUpstream(t)
  const env = { REDIS_URL: TEST_REDIS_URL, TRUST_PROXY: '127.0.0.1' }
  const first = await startGateway(t, { env, build: { redisKeyPrefix: prefix } })
  const second = await startGateway(t, { env, databaseUrl: first.app.config.databaseUrl, build: { redisKeyPrefix: prefix, migrate: false } })
  return { first, second, upstreamUrl: upstream.url }
}

t.test('Redis store: a ban imposed through one instance refuses on the other; DELETE on either lifts it for both', async (t) => {
  const prefix = await redisKeyPrefix(t)
  if (prefix === null) return void t.plan(0, 'Redis unreachable at 127.0.0.1:6379 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  const { first, second, upstreamUrl } = await twoOnRedis(t, prefix)
  t.equal(first.app.rateLimits.store, 'redis')
  await createRoute(first.app, { name: 'api', path: '/api', targets: [{ url: upstreamUrl, weight: 1 }], rateLimit: { max: 2, windowMs: 200, by: 'ip', banSeconds: 3 } })
  await second.app.configChanges.refresh()

  const statuses: number[] = []
  let exceeded: HttpResponse | null = null
  while ((statuses.length === 0 || statuses[statuses.length - 1] === 200) && statuses.length < 10) {
    exceeded = await httpRequest(`${first.url}/api/x`, from('198.51.100.9'))
    statuses.push(exceeded.statusCode)
  }
  t.equal(statuses[statuses.length - 1], 429, `exceeded through the first instance after ${statuses.length - 1} admitted`)
  t.equal((exceeded as HttpResponse).headers['retry-after'], '3')

  await sleep(500)
  expectBanned(t, await httpRequest(`${second.url}/api/x`, from('198.51.100.9')), 3, 'the second instance, windows later')
  expectBanned(t, await httpRequest(`${first.url}/api/x`, from('198.51.100.9')), 3, 'the first instance, windows later')
  t.equal((await httpRequest(`${second.url}/api/x`, from('198.51.100.10'))).statusCode, 200, 'another client is not banned')

  const items = await counters(second.url, '198.51.100.9')
  t.equal(items[0].banSeconds, 3)
  const until = Date.parse(items[0].bannedUntil)
  t.ok(until > Date.now() && until <= Date.now() + 3000, `the second instance shows the ban until ${items[0].bannedUntil}`)

  t.equal((await httpRequest(`${second.url}/admin/rate-limits/198.51.100.9`, { method: 'DELETE', headers: adminHeaders })).statusCode, 204)
  t.equal((await httpRequest(`${first.url}/api/x`, from('198.51.100.9'))).statusCode, 200, 'lifted on the second, admitted by the first')
  t.same((await counters(first.url, '198.51.100.9')).map((item) => item.bannedUntil), [null])
})

t.test('banSeconds is validated, round-trips through GET, PATCH and /admin/config, and is in the OpenAPI document', async (t) => {
  const upstream = await startUpstream(t)
  const { app } = await startGateway(t)
  const targets = [{ url: upstream.url, weight: 1 }]
  const bad: Array<[unknown, RegExp]> = [
    [0, /^body\/rateLimit\/banSeconds must be >= 1$/],
    [-5, /^body\/rateLimit\/banSeconds must be >= 1$/],
    [1.5, /^body\/rateLimit\/banSeconds must be an integer$/],
    ['10', /^body\/rateLimit\/banSeconds must be an integer$/],
    [null, /^body\/rateLimit\/banSeconds must be an integer$/],
    [604_801, /^body\/rateLimit\/banSeconds must be <= 604800$/]
  ]
  for (const [banSeconds, message] of bad) {
    const response = await app.inject({ method: 'POST', url: '/admin/routes', headers: adminHeaders, payload: { name: 'x', path: '/x', targets, rateLimit: { max: 1, banSeconds } } })
    t.equal(response.statusCode, 400, `banSeconds ${JSON.stringify(banSeconds)} → 400`)
    t.match(response.json(), { statusCode: 400, error: 'Bad Request', message, requestId: String })
    t.match(response.json().message, /rateLimit\/banSeconds|rateLimit\.banSeconds/, 'the message names the field')
  }
  const created = await createRoute(app, { name: 'api', path: '/api', targets, rateLimit: { max: 5, windowMs: 1000, by: 'ip', banSeconds: 604_800 } })
  t.same(created.rateLimit, { max: 5, windowMs: 1000, by: 'ip', banSeconds: 604_800 })
  const patched = await app.inject({ method: 'PATCH', url: `/admin/routes/${created.id}`, headers: adminHeaders, payload: { rateLimit: { max: 5, banSeconds: 60 } } })
  t.equal(patched.statusCode, 200)
  t.same(patched.json().rateLimit, { max: 5, windowMs: 60_000, by: 'ip', banSeconds: 60 })
  const badPatch = await app.inject({ method: 'PATCH', url: `/admin/routes/${created.id}`, headers: adminHeaders, payload: { rateLimit: { max: 5, banSeconds: 0 } } })
  t.equal(badPatch.statusCode, 400)

  const config = await app.inject({ method: 'GET', url: '/admin/config', headers: adminHeaders })
  const document = config.json()
  t.same(document.routes[0].rateLimit, { max: 5, windowMs: 60_000, by: 'ip', banSeconds: 60 })
  document.routes[0].rateLimit.banSeconds = 'forever'
  const badImport = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: document })
  t.equal(badImport.statusCode, 400)
  t.match(badImport.json().message, /banSeconds/)
  document.routes[0].rateLimit.banSeconds = 30
  t.equal((await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: document })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: `/admin/routes/${created.id}`, headers: adminHeaders })).json().rateLimit.banSeconds, 30)

  const openapi = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
  const text = JSON.stringify(openapi)
  t.match(text, /"banSeconds":\{[^}]*"minimum":1/, 'the OpenAPI document has banSeconds with its bounds')
  t.match(text, /"bannedUntil"/, 'and the admin answer showing the ban')
})
