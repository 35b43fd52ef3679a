import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { adminHeaders, createRoute, failOnUnhandledRejections, httpRequest, startGateway, startPrivateRedis, startUpstream } from '../helper.js'

/**
 * docs/policies.md "Redis outage", under load: a hung Redis (SIGSTOP) and a killed one cost
 * at most REDIS_TIMEOUT_MS for a handful of requests, then nothing (the breaker bypasses
 * Redis), gatehouse_redis_up says so, and limiting is enforced again once Redis is back.
 *
 * Before the breaker, every rate-limited request waited the full 300 ms command timeout for as
 * long as Redis hung: 8 connections made ~27 requests a second and 50 sequential requests took
 * 15 s. Latency bounds below are loose for a loaded 2-core machine and still far from that;
 * the exact check is how many requests were sent to Redis at all (failed open − bypassed).
 */

const TIMEOUT_MS = 100
const CONNECTIONS = 8

interface Sample { status: number, ms: number }

/** CONNECTIONS clients sending requests back to back for `durationMs`. */
async function load (url: string, durationMs: number): Promise<Sample[]> {
  const samples: Sample[] = []
  const until = performance.now() + durationMs
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (performance.now() < until) {
      const started = performance.now()
      const response = await httpRequest(url)
      samples.push({ status: response.statusCode, ms: performance.now() - started })
    }
  }))
  return samples
}

async function redisUpMetric (url: string): Promise<number> {
  const body = (await httpRequest(`${url}/metrics`, { headers: adminHeaders })).body
  const match = /^gatehouse_redis_up (\d+)$/m.exec(body)
  if (match === null) throw new Error('gatehouse_redis_up is missing from /metrics')
  return Number(match[1])
}

async function redisStatus (url: string): Promise<Record<string, unknown>> {
  return (await httpRequest(`${url}/admin/status`, { headers: adminHeaders })).json().redis
}

async function waitForUp (app: FastifyInstance, limitMs: number): Promise<number> {
  const started = Date.now()
  while (!app.redis.up && Date.now() - started < limitMs) await sleep(20)
  return Date.now() - started
}

function median (samples: Sample[]): number {
  const sorted = samples.map((s) => s.ms).sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function statuses (url: string, count: number): Promise<number[]> {
  const result: number[] = []
  for (let i = 0; i < count; i++) result.push((await httpRequest(url)).statusCode)
  return result
}

t.test('a hung Redis costs REDIS_TIMEOUT_MS for a handful of requests, then nothing; limits return with it', async (t) => {
  failOnUnhandledRejections(t)
  const redis = await startPrivateRedis(t)
  if (redis === null) return void t.plan(0, 'redis-server is not installed (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'))
  const { app, url } = await startGateway(t, { env: { REDIS_URL: redis.url, REDIS_TIMEOUT_MS: String(TIMEOUT_MS) }, build: { redisKeyPrefix: 'hang:' } })
  const targets = [{ url: upstream.url, weight: 1 }]
  await createRoute(app, { name: 'busy', path: '/busy', targets, rateLimit: { max: 1_000_000, windowMs: 60_000, by: 'ip' } })
  await createRoute(app, { name: 'strict', path: '/strict', targets, rateLimit: { max: 3, windowMs: 60_000, by: 'ip' } })
  t.equal(await redisUpMetric(url), 1, 'gatehouse_redis_up 1 while Redis answers')
  t.match(await redisStatus(url), { configured: true, up: true, lastError: null })
  t.same(await statuses(`${url}/strict/x`, 4), [200, 200, 200, 429], 'limited while Redis is up')

  // The same load with Redis answering, for comparison on whatever this machine is doing now.
  const healthy = await load(`${url}/busy/x`, 1000)
  const failOpenBefore = app.rateLimits.failOpen
  const bypassedBefore = app.redis.status().bypassed
  redis.signal('SIGSTOP')
  const hung = await load(`${url}/busy/x`, 1000)
  t.equal(hung.filter((s) => s.status !== 200).length, 0, `all ${hung.length} requests answered 200 while Redis hung (fail open)`)
  t.equal(app.rateLimits.failOpen - failOpenBefore, hung.length, 'every request let through without a decision is counted')
  // Latencies on a loaded machine are noisy; which requests were sent to Redis is not.
  const waited = hung.length - (app.redis.status().bypassed - bypassedBefore)
  t.ok(waited >= 3 && waited <= 2 * CONNECTIONS, `${waited} of ${hung.length} requests waited for the hung Redis (3 to open the breaker, at most ~1 per connection)`)
  const slowest = Math.max(...hung.map((s) => s.ms))
  t.ok(slowest < TIMEOUT_MS + 1000, `the slowest took ${slowest.toFixed(0)} ms (REDIS_TIMEOUT_MS ${TIMEOUT_MS}, plus a loaded machine)`)
  t.ok(median(hung) < 2 * TIMEOUT_MS, `median ${median(hung).toFixed(1)} ms with Redis hung, ${median(healthy).toFixed(1)} ms with it healthy (~300 without a breaker)`)
  t.ok(hung.length >= healthy.length / 4, `${hung.length} requests in 1 s with Redis hung, ${healthy.length} with it healthy (at most ~27 without a breaker)`)

  // After the breaker opened, 50 sequential requests finish in well under 50 × REDIS_TIMEOUT_MS.
  const sequentialStart = performance.now()
  t.same(await statuses(`${url}/busy/x`, 50), new Array(50).fill(200))
  const sequentialMs = performance.now() - sequentialStart
  t.ok(sequentialMs < 50 * TIMEOUT_MS / 4, `50 sequential requests took ${sequentialMs.toFixed(0)} ms (< ${50 * TIMEOUT_MS / 4})`)

  t.equal(await redisUpMetric(url), 0, 'gatehouse_redis_up 0 while Redis hangs')
  const down = await redisStatus(url)
  t.match(down, { configured: true, up: false, lastError: 'Command timed out' })
  t.ok((down.bypassed as number) >= 50, `${String(down.bypassed)} commands bypassed`)
  const metrics = (await httpRequest(`${url}/metrics`, { headers: adminHeaders })).body
  t.match(metrics, new RegExp(`^gatehouse_rate_limit_fail_open_total ${app.rateLimits.failOpen}$`, 'm'))
  const admin = await httpRequest(`${url}/admin/rate-limits/127.0.0.1`, { headers: adminHeaders })
  t.equal(admin.statusCode, 503, 'the admin view of the counters answers 503 while Redis is down')
  t.match(admin.json(), { statusCode: 503, error: 'Service Unavailable', message: /^rate-limit store \(redis\) unavailable: redis unavailable: Command timed out$/, requestId: String })
  t.equal(admin.headers['retry-after'], '1')

  redis.signal('SIGCONT')
  const backAfter = await waitForUp(app, 3000)
  t.equal(app.redis.up, true, `a probe found Redis back ${backAfter} ms after SIGCONT`)
  t.equal(await redisUpMetric(url), 1, 'gatehouse_redis_up back to 1')
  t.same(await statuses(`${url}/strict/x`, 2), [429, 429], 'limits are enforced again (the counter survived the hang)')
  const failOpenAfter = app.rateLimits.failOpen
  t.same(await statuses(`${url}/busy/x`, 5), [200, 200, 200, 200, 200])
  t.equal(app.rateLimits.failOpen, failOpenAfter, 'nothing fails open once Redis is back')
})

t.test('a Redis killed under load is bypassed at once and used again when it restarts', async (t) => {
  failOnUnhandledRejections(t)
  const redis = await startPrivateRedis(t)
  if (redis === null) return void t.plan(0, 'redis-server is not installed (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'))
  const { app, url } = await startGateway(t, { env: { REDIS_URL: redis.url, REDIS_TIMEOUT_MS: String(TIMEOUT_MS) }, build: { redisKeyPrefix: 'kill:' } })
  const targets = [{ url: upstream.url, weight: 1 }]
  await createRoute(app, { name: 'busy', path: '/busy', targets, rateLimit: { max: 1_000_000, windowMs: 60_000, by: 'ip' } })
  await createRoute(app, { name: 'strict', path: '/strict', targets, rateLimit: { max: 3, windowMs: 60_000, by: 'ip', banSeconds: 60 } })
  t.same(await statuses(`${url}/strict/x`, 4), [200, 200, 200, 429], 'limited (and banned) while Redis is up')

  const failOpenBefore = app.rateLimits.failOpen
  const loaded = load(`${url}/busy/x`, 1200)
  await sleep(300)
  await redis.stop()
  const samples = await loaded
  t.equal(samples.filter((s) => s.status !== 200).length, 0, `all ${samples.length} requests answered 200 across the kill`)
  const failedOpen = app.rateLimits.failOpen - failOpenBefore
  const failedOnRedis = failedOpen - app.redis.status().bypassed
  t.ok(failedOpen > 0, `${failedOpen} requests failed open after the kill`)
  t.ok(failedOnRedis <= 2 * CONNECTIONS, `${failedOnRedis} of them were sent to the dead Redis (at most ~1 per connection); the rest bypassed it`)
  t.ok(median(samples) < 2 * TIMEOUT_MS, `median ${median(samples).toFixed(1)} ms`)
  t.equal(await redisUpMetric(url), 0, 'gatehouse_redis_up 0 once the connection closed')
  t.match(await redisStatus(url), { configured: true, up: false, lastError: String })
  t.same(await statuses(`${url}/strict/x`, 2), [200, 200], 'rate limits (and bans) fail open while Redis is gone')

  await redis.start()
  const backAfter = await waitForUp(app, 5000)
  t.equal(app.redis.up, true, `Redis used again ${backAfter} ms after it restarted`)
  t.equal(await redisUpMetric(url), 1)
  // The restarted Redis is empty (no persistence): counting starts afresh.
  t.same(await statuses(`${url}/strict/x`, 5), [200, 200, 200, 429, 429], 'limits are enforced again after the restart')
})
