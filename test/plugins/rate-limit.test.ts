import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  adminHeaders, createApiKey, createConsumer, createRoute, httpRequest, startGateway, startUpstream, type TestContext
} from '../helper.js'

type Limit = { max: number, windowMs: number, by: 'ip' | 'route' | 'consumer' }

async function setup (t: TestContext, routes: Array<{ name: string, rateLimit: Limit | null, auth?: Record<string, unknown> }>, env: Record<string, string> = {}) {
  const upstream = await startUpstream(t)
  const gateway = await startGateway(t, { env: { TRUST_PROXY: '127.0.0.1', ...env } })
  for (const route of routes) {
    await createRoute(gateway.app, { name: route.name, path: `/${route.name}`, targets: [{ url: upstream.url, weight: 1 }], rateLimit: route.rateLimit, auth: (route.auth ?? { type: 'none' }) as any })
  }
  return { ...gateway, upstream }
}

const from = (ip: string, headers: Record<string, string> = {}) => ({ headers: { 'x-forwarded-for': ip, ...headers } })

async function statuses (url: string, count: number, options = {}): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < count; i++) out.push((await httpRequest(url, options)).statusCode)
  return out
}

t.test('admits exactly max requests; request max+1 gets 429 JSON with Retry-After; headers count down', async (t) => {
  const { url, upstream } = await setup(t, [{ name: 'api', rateLimit: { max: 3, windowMs: 60_000, by: 'ip' } }])
  const seen: Array<[number, unknown, unknown, unknown]> = []
  for (let i = 0; i < 4; i++) {
    const response = await httpRequest(`${url}/api/x`)
    seen.push([response.statusCode, response.headers['x-ratelimit-limit'], response.headers['x-ratelimit-remaining'], response.headers['retry-after']])
    const reset = Number(response.headers['x-ratelimit-reset'])
    t.ok(reset >= 1 && reset <= 60, `x-ratelimit-reset ${reset} is seconds until the window ends`)
    if (response.statusCode === 429) {
      t.same(Object.keys(response.json()).sort(), ['error', 'message', 'requestId', 'statusCode'])
      t.equal(response.json().error, 'Too Many Requests')
      const retryAfter = Number(response.headers['retry-after'])
      t.ok(retryAfter >= 1 && retryAfter <= 120, `Retry-After ${retryAfter}`)
    }
  }
  t.same(seen.map(([status, limit, remaining]) => [status, limit, remaining]), [
    [200, '3', '2'], [200, '3', '1'], [200, '3', '0'], [429, '3', '0']
  ])
  t.equal(seen[0][3], undefined, 'no Retry-After while admitted')
  t.equal(upstream.requests.length, 3, 'the refused request never reached the upstream')
})

t.test('GET /admin/rate-limits/:ip shows the counters; DELETE resets them', async (t) => {
  const { app, url } = await setup(t, [
    { name: 'api', rateLimit: { max: 2, windowMs: 60_000, by: 'ip' } },
    { name: 'shared', rateLimit: { max: 50, windowMs: 60_000, by: 'route' } },
    { name: 'open', rateLimit: null }
  ])
  await statuses(`${url}/api/x`, 3, from('198.51.100.4'))
  await httpRequest(`${url}/shared/x`, from('198.51.100.4'))
  const counters = await app.inject({ method: 'GET', url: '/admin/rate-limits/198.51.100.4', headers: adminHeaders })
  t.equal(counters.statusCode, 200)
  const body = counters.json()
  t.equal(body.ip, '198.51.100.4')
  t.equal(body.total, 2)
  t.match(body.items.find((item: any) => item.routeName === 'api'), { scope: 'ip', limit: 2, windowMs: 60_000, current: 2, remaining: 0 })
  t.match(body.items.find((item: any) => item.routeName === 'shared'), { scope: 'route', limit: 50, current: 1, remaining: 49 })
  t.equal((await httpRequest(`${url}/api/x`, from('198.51.100.4'))).statusCode, 429)

  const reset = await app.inject({ method: 'DELETE', url: '/admin/rate-limits/198.51.100.4', headers: adminHeaders })
  t.equal(reset.statusCode, 204)
  const after = await httpRequest(`${url}/api/x`, from('198.51.100.4'))
  t.equal(after.statusCode, 200)
  t.equal(after.headers['x-ratelimit-remaining'], '1')

  const other = await app.inject({ method: 'GET', url: '/admin/rate-limits/203.0.113.1', headers: adminHeaders })
  t.match(other.json().items.find((item: any) => item.routeName === 'api'), { current: 0, remaining: 2 })
})

t.test('invalid /admin/rate-limits input → 400 naming the field; no token → 401', async (t) => {
  const { app } = await setup(t, [{ name: 'api', rateLimit: { max: 2, windowMs: 60_000, by: 'ip' } }])
  for (const ip of ['not-an-ip', '300.1.1.1', '10.0.0.0%2F8', 'fe80::1%25eth0']) {
    for (const method of ['GET', 'DELETE'] as const) {
      const response = await app.inject({ method, url: `/admin/rate-limits/${ip}`, headers: adminHeaders })
      t.equal(response.statusCode, 400, `${method} ${ip}`)
      t.match(response.json().message, /params\/ip/)
    }
  }
  t.equal((await app.inject({ method: 'GET', url: '/admin/rate-limits/10.0.0.1' })).statusCode, 401)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/rate-limits/10.0.0.1' })).statusCode, 401)
})

t.test('the window slides: a burst at the end of a window does not refill at the boundary', async (t) => {
  const windowMs = 2000
  const { url } = await setup(t, [{ name: 'api', rateLimit: { max: 10, windowMs, by: 'ip' } }])
  const untilFraction = async (fraction: number): Promise<void> => {
    const into = Date.now() % windowMs
    const target = fraction * windowMs
    await sleep(into < target ? target - into : windowMs - into + target)
  }
  await httpRequest(`${url}/api/warmup`, from('192.0.2.200'))
  await untilFraction(0.85)
  const burst = await statuses(`${url}/api/x`, 10)
  t.same(burst, new Array(10).fill(200), 'the whole limit at the end of one window')
  await untilFraction(0.05)
  const afterBoundary = (await statuses(`${url}/api/x`, 10)).filter((status) => status === 200).length
  t.ok(afterBoundary <= 1, `${afterBoundary} admitted right after the boundary (a fixed window would admit 10)`)
  await untilFraction(0.6)
  const midWindow = (await statuses(`${url}/api/x`, 10)).filter((status) => status === 200).length + afterBoundary
  t.ok(midWindow >= 5 && midWindow <= 7, `${midWindow} admitted by 60 % into the next window (≈ 6 of the previous 10 slid out)`)
})

t.test('by: "route" counts all clients of the route together', async (t) => {
  const { url } = await setup(t, [{ name: 'api', rateLimit: { max: 3, windowMs: 60_000, by: 'route' } }])
  const results = [
    (await httpRequest(`${url}/api/x`, from('10.0.0.1'))).statusCode,
    (await httpRequest(`${url}/api/x`, from('10.0.0.2'))).statusCode,
    (await httpRequest(`${url}/api/x`, from('2001:db8::1'))).statusCode,
    (await httpRequest(`${url}/api/x`, from('10.0.0.4'))).statusCode
  ]
  t.same(results, [200, 200, 200, 429])
})

t.test('by: "ip" keeps a separate counter per client and per route', async (t) => {
  const { url } = await setup(t, [
    { name: 'a', rateLimit: { max: 2, windowMs: 60_000, by: 'ip' } },
    { name: 'b', rateLimit: { max: 2, windowMs: 60_000, by: 'ip' } }
  ])
  t.same(await statuses(`${url}/a/x`, 3, from('10.0.0.1')), [200, 200, 429])
  t.same(await statuses(`${url}/b/x`, 3, from('10.0.0.1')), [200, 200, 429], 'route b has its own counter')
  t.same(await statuses(`${url}/a/x`, 2, from('10.0.0.2')), [200, 200], 'another client has its own counter')
})

t.test('RATE_LIMIT_MAX is one counter per IP across routes without their own limit, and skips routes with one', async (t) => {
  const { url } = await setup(t, [
    { name: 'a', rateLimit: null },
    { name: 'b', rateLimit: null },
    { name: 'own', rateLimit: { max: 10, windowMs: 60_000, by: 'ip' } }
  ], { RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000' })
  const first = await httpRequest(`${url}/a/x`, from('10.0.0.1'))
  t.equal(first.headers['x-ratelimit-limit'], '3')
  t.equal(first.headers['x-ratelimit-remaining'], '2')
  t.equal((await httpRequest(`${url}/b/x`, from('10.0.0.1'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/a/x`, from('10.0.0.1'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/b/x`, from('10.0.0.1'))).statusCode, 429, 'the fourth request across a and b')
  const own = await statuses(`${url}/own/x`, 5, from('10.0.0.1'))
  t.same(own, [200, 200, 200, 200, 200], 'a route with its own limit is not under the gateway-wide one')
  const ownHeaders = await httpRequest(`${url}/own/x`, from('10.0.0.1'))
  t.equal(ownHeaders.headers['x-ratelimit-limit'], '10')
  t.equal((await httpRequest(`${url}/a/x`, from('10.0.0.2'))).statusCode, 200, 'another IP has its own gateway-wide counter')
})

t.test('routes without any limit answer no rate-limit headers', async (t) => {
  const { url } = await setup(t, [{ name: 'open', rateLimit: null }])
  const response = await httpRequest(`${url}/open/x`)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['x-ratelimit-limit'], undefined)
  t.equal(response.headers['x-ratelimit-remaining'], undefined)
})

t.test('IPv6 clients are counted by /64: rotating addresses within the subnet does not reset the limit', async (t) => {
  const { app, url } = await setup(t, [{ name: 'api', rateLimit: { max: 3, windowMs: 60_000, by: 'ip' } }])
  t.equal((await httpRequest(`${url}/api/x`, from('2001:db8:1:2::1'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/api/x`, from('2001:db8:1:2:ffff:ffff:ffff:ffff'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/api/x`, from('2001:db8:1:2:abcd::9'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/api/x`, from('2001:db8:1:2::77'))).statusCode, 429)
  t.equal((await httpRequest(`${url}/api/x`, from('2001:db8:1:3::1'))).statusCode, 200, 'the next /64 is another client')
  const counters = await app.inject({ method: 'GET', url: '/admin/rate-limits/2001:db8:1:2::1234', headers: adminHeaders })
  t.equal(counters.json().subject, '2001:db8:1:2::/64')
  t.match(counters.json().items[0], { current: 3, remaining: 0 })
})

t.test('with TRUST_PROXY=false a forged X-Forwarded-For does not escape the limit', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { env: { TRUST_PROXY: 'false' } })
  await createRoute(app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 2, windowMs: 60_000, by: 'ip' } })
  const results = []
  for (let i = 0; i < 4; i++) results.push((await httpRequest(`${url}/api/x`, from(`203.0.113.${i}`))).statusCode)
  t.same(results, [200, 200, 429, 429])
  const counters = await app.inject({ method: 'GET', url: '/admin/rate-limits/127.0.0.1', headers: adminHeaders })
  t.match(counters.json().items[0], { current: 2 })
})

t.test('with a trusted proxy, X-Forwarded-For decides the client', async (t) => {
  const { url } = await setup(t, [{ name: 'api', rateLimit: { max: 1, windowMs: 60_000, by: 'ip' } }])
  t.same([
    (await httpRequest(`${url}/api/x`, from('203.0.113.1'))).statusCode,
    (await httpRequest(`${url}/api/x`, from('203.0.113.2'))).statusCode,
    (await httpRequest(`${url}/api/x`, from('203.0.113.1'))).statusCode
  ], [200, 200, 429])
})

t.test('by: "consumer" counts each consumer; a consumer\'s own limit overrides the route\'s; no consumer → by IP', async (t) => {
  const { app, url } = await setup(t, [
    { name: 'keyed', rateLimit: { max: 2, windowMs: 60_000, by: 'consumer' }, auth: { type: 'api-key' } },
    { name: 'anon', rateLimit: { max: 2, windowMs: 60_000, by: 'consumer' } }
  ])
  await createConsumer(app, 'alice')
  await createConsumer(app, 'bob', { max: 4, windowMs: 60_000 })
  const alice = (await createApiKey(app, 'alice')).key
  const bob = (await createApiKey(app, 'bob')).key
  t.same(await statuses(`${url}/keyed/x`, 3, from('10.0.0.1', { 'x-api-key': alice })), [200, 200, 429])
  t.same(await statuses(`${url}/keyed/x`, 1, from('10.0.0.2', { 'x-api-key': alice })), [429], 'another IP, same consumer')
  const bobFirst = await httpRequest(`${url}/keyed/x`, from('10.0.0.1', { 'x-api-key': bob }))
  t.equal(bobFirst.headers['x-ratelimit-limit'], '4')
  t.same(await statuses(`${url}/keyed/x`, 4, from('10.0.0.1', { 'x-api-key': bob })), [200, 200, 200, 429])
  t.same(await statuses(`${url}/anon/x`, 3, from('10.0.0.1')), [200, 200, 429])
  t.same(await statuses(`${url}/anon/x`, 1, from('10.0.0.2')), [200], 'without a consumer each IP counts alone')
})

t.test('a route\'s limit changes at runtime without a restart', async (t) => {
  const { app, url } = await setup(t, [{ name: 'api', rateLimit: { max: 1, windowMs: 60_000, by: 'ip' } }])
  t.same(await statuses(`${url}/api/x`, 2), [200, 429])
  const patched = await app.inject({ method: 'PATCH', url: '/admin/routes/api', headers: adminHeaders, payload: { rateLimit: { max: 3, windowMs: 60_000, by: 'ip' } } })
  t.equal(patched.statusCode, 200)
  const next = await httpRequest(`${url}/api/x`)
  t.equal(next.statusCode, 200)
  t.equal(next.headers['x-ratelimit-limit'], '3')
  t.equal(next.headers['x-ratelimit-remaining'], '1', 'the counter survives the change; only the limit moved')
  await app.inject({ method: 'PATCH', url: '/admin/routes/api', headers: adminHeaders, payload: { rateLimit: null } })
  const unlimited = await httpRequest(`${url}/api/x`)
  t.equal(unlimited.statusCode, 200)
  t.equal(unlimited.headers['x-ratelimit-limit'], undefined)
})

t.test('429s are audited as rate_limited', async (t) => {
  const { app, url } = await setup(t, [{ name: 'api', rateLimit: { max: 1, windowMs: 60_000, by: 'ip' } }])
  await statuses(`${url}/api/x`, 2)
  await app.audit.flush()
  const logs = await app.inject({ method: 'GET', url: '/admin/audit/logs?outcome=rate_limited', headers: adminHeaders })
  t.equal(logs.statusCode, 200)
  t.equal(logs.json().total, 1)
  t.match(logs.json().items[0], { status: 429, outcome: 'rate_limited', clientIp: '127.0.0.1' })
})

t.test("an upstream's own x-ratelimit-* headers never replace the gateway's", async (t) => {
  const upstream = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'x-ratelimit-limit': '999', 'x-ratelimit-remaining': '998', 'x-upstream': 'yes' }).end('ok')
  })
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'limited', path: '/limited', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 5, windowMs: 60_000, by: 'ip' } })
  const response = await httpRequest(`${url}/limited`)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['x-ratelimit-limit'], '5')
  t.equal(response.headers['x-ratelimit-remaining'], '4')
  t.equal(response.headers['x-upstream'], 'yes', 'other upstream headers still pass')
})
