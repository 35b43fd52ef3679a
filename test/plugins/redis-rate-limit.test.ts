import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  adminHeaders, createRoute, httpRequest, redisKeyPrefix, startGateway, startUpstream, TEST_REDIS_URL, type TestContext
} from '../helper.js'

/** Two gateway instances on one database and one Redis key prefix, as two hosts would be. */
async function twoInstances (t: TestContext, prefix: string, pollMs = 250) {
  const upstream = await startUpstream(t)
  const env = { REDIS_URL: TEST_REDIS_URL, TRUST_PROXY: '127.0.0.1' }
  const first = await startGateway(t, { env, build: { redisKeyPrefix: prefix, configPollIntervalMs: pollMs } })
  const second = await startGateway(t, { env, databaseUrl: first.app.config.databaseUrl, build: { redisKeyPrefix: prefix, migrate: false, configPollIntervalMs: pollMs } })
  return { first, second, upstream }
}

const from = (ip: string) => ({ headers: { 'x-forwarded-for': ip } })

t.test('two instances sharing Redis admit the limit together, not each', async (t) => {
  const prefix = await redisKeyPrefix(t)
  if (prefix === null) return void t.plan(0, 'Redis unreachable at 127.0.0.1:6379 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  const { first, second, upstream } = await twoInstances(t, prefix)
  t.equal(first.app.rateLimits.store, 'redis')
  await createRoute(first.app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 6, windowMs: 60_000, by: 'ip' } })
  await createRoute(first.app, { name: 'shared', path: '/shared', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 4, windowMs: 60_000, by: 'route' } })
  await second.app.configChanges.refresh()

  const results: number[] = []
  const remaining: unknown[] = []
  for (let i = 0; i < 8; i++) {
    const response = await httpRequest(`${(i % 2 === 0 ? first : second).url}/api/x`, from('198.51.100.7'))
    results.push(response.statusCode)
    remaining.push(response.headers['x-ratelimit-remaining'])
  }
  t.same(results, [200, 200, 200, 200, 200, 200, 429, 429])
  t.same(remaining, ['5', '4', '3', '2', '1', '0', '0', '0'])
  t.equal(upstream.requests.length, 6)

  // Concurrent requests through both instances still never pass the limit (atomic script).
  const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => httpRequest(`${(i % 2 === 0 ? first : second).url}/shared/x`, from(`10.0.0.${i}`))))
  t.equal(burst.filter((response) => response.statusCode === 200).length, 4)
  t.equal(burst.filter((response) => response.statusCode === 429).length, 16)

  const counters = await second.app.inject({ method: 'GET', url: '/admin/rate-limits/198.51.100.7', headers: adminHeaders })
  t.match(counters.json().items.find((item: any) => item.routeName === 'api'), { scope: 'ip', current: 6, remaining: 0 })
  const reset = await first.app.inject({ method: 'DELETE', url: '/admin/rate-limits/198.51.100.7', headers: adminHeaders })
  t.equal(reset.statusCode, 204)
  t.equal((await httpRequest(`${second.url}/api/x`, from('198.51.100.7'))).statusCode, 200, 'a reset on one instance applies on the other')
})

t.test('Redis counters slide like the memory ones and keep IPv6 /64 bucketing', async (t) => {
  const prefix = await redisKeyPrefix(t)
  if (prefix === null) return void t.plan(0, 'Redis unreachable at 127.0.0.1:6379 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  const { first, upstream } = await twoInstances(t, prefix)
  const windowMs = 2000
  await createRoute(first.app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 4, windowMs, by: 'ip' } })
  const untilFraction = async (fraction: number): Promise<void> => {
    const into = Date.now() % windowMs
    const target = fraction * windowMs
    await sleep(into < target ? target - into : windowMs - into + target)
  }
  await untilFraction(0.85)
  const ips = ['2001:db8:7:7::1', '2001:db8:7:7::2', '2001:db8:7:7:a::3', '2001:db8:7:7:b::4', '2001:db8:7:7:c::5']
  const burst: number[] = []
  for (const ip of ips) burst.push((await httpRequest(`${first.url}/api/x`, from(ip))).statusCode)
  t.same(burst, [200, 200, 200, 200, 429], 'one /64, one counter')
  await untilFraction(0.05)
  const after = (await httpRequest(`${first.url}/api/x`, from('2001:db8:7:7::9'))).statusCode
  t.equal(after, 429, 'the boundary does not refill the limit')
  t.equal((await httpRequest(`${first.url}/api/x`, from('2001:db8:7:8::1'))).statusCode, 200, 'another /64')
})

t.test('a filter change on one instance reaches another through the Redis broadcast, not the poll', async (t) => {
  const prefix = await redisKeyPrefix(t)
  if (prefix === null) return void t.plan(0, 'Redis unreachable at 127.0.0.1:6379 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  // A poll this slow cannot deliver the change within the test: only the broadcast can.
  const { first, second, upstream } = await twoInstances(t, prefix, 60_000)
  await createRoute(first.app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }] })
  const started = Date.now()
  while (Date.now() - started < 1000 && (await httpRequest(`${second.url}/api/x`)).statusCode !== 200) await sleep(20)
  t.equal((await httpRequest(`${second.url}/api/x`)).statusCode, 200, 'a new route reached the second instance by broadcast')

  const created = await first.app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload: { action: 'deny', ip: '127.0.0.1' } })
  t.equal(created.statusCode, 201)
  const changedAt = Date.now()
  let status = 200
  while (Date.now() - changedAt < 1000 && status !== 403) {
    status = (await httpRequest(`${second.url}/api/x`)).statusCode
    if (status !== 403) await sleep(10)
  }
  t.equal(status, 403, `the deny rule applied on the second instance after ${Date.now() - changedAt} ms`)
  t.ok(second.app.redis.broadcastsReceived >= 2, `broadcasts received: ${second.app.redis.broadcastsReceived}`)
  t.equal(first.app.redis.broadcastsReceived, 0, 'an instance ignores its own broadcasts')
})
