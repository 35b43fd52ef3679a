import t from 'tap'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { adminHeaders, createRoute, failOnUnhandledRejections, httpRequest, startGateway, startPrivateRedis, startUpstream } from '../helper.js'

/** Collects the gateway's JSON log lines. */
function logSink (): { stream: Writable, lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line))
      callback()
    }
  })
  return { stream, lines }
}

async function timed (url: string): Promise<{ status: number, ms: number }> {
  const started = performance.now()
  const response = await httpRequest(url)
  return { status: response.statusCode, ms: performance.now() - started }
}

t.test('Redis down: proxied traffic fails open fast with a warning and a metric, and limiting recovers when Redis returns', async (t) => {
  failOnUnhandledRejections(t)
  const redis = await startPrivateRedis(t)
  if (redis === null) return void t.plan(0, 'redis-server is not installed (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  const logs = logSink()
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, {
    env: { REDIS_URL: redis.url },
    build: { redisKeyPrefix: 'outage:', logger: { level: 'warn', stream: logs.stream } }
  })
  await createRoute(app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 3, windowMs: 60_000, by: 'ip' } })

  const up: number[] = []
  for (let i = 0; i < 4; i++) up.push((await timed(`${url}/api/x`)).status)
  t.same(up, [200, 200, 200, 429], 'limited while Redis is up')

  // A Redis that hangs: connections stay open, commands never answer.
  redis.signal('SIGSTOP')
  const hung: Array<{ status: number, ms: number }> = []
  const bypassed: number[] = []
  for (let i = 0; i < 4; i++) {
    hung.push(await timed(`${url}/api/x`))
    bypassed.push(app.redis.status().bypassed)
  }
  t.same(hung.map((r) => r.status), [200, 200, 200, 200], 'fails open while Redis hangs')
  for (const r of hung) t.ok(r.ms < 300, `a request waited ${r.ms.toFixed(0)} ms for the hung Redis (REDIS_TIMEOUT_MS 100)`)
  t.same(bypassed, [0, 0, 0, 1], `after 3 timeouts Redis is bypassed: the 4th request was not sent (took ${hung[3].ms.toFixed(0)} ms)`)
  redis.signal('SIGCONT')
  const probeStart = Date.now()
  while (!app.redis.up && Date.now() - probeStart < 3000) await sleep(20)
  t.equal(app.redis.up, true, `the probe found Redis back ${Date.now() - probeStart} ms after SIGCONT`)

  // A Redis that is gone: commands fail at once (no offline queue).
  await redis.stop()
  const down: Array<{ status: number, ms: number }> = []
  for (let i = 0; i < 10; i++) down.push(await timed(`${url}/api/x`))
  t.same(down.map((r) => r.status), new Array(10).fill(200), 'fails open while Redis is down')
  const slowest = Math.max(...down.map((r) => r.ms))
  t.ok(slowest < 500, `slowest request while Redis was down: ${slowest.toFixed(0)} ms`)
  t.ok(app.rateLimits.failOpen >= 14, `fail-open count ${app.rateLimits.failOpen}`)
  t.ok(logs.lines.some((line) => line.level === 40 && /fail open/.test(line.msg)), 'a warning was logged')
  t.equal(logs.lines.filter((line) => /^rate-limit store unavailable/.test(line.msg)).length, 1, 'fail-open warnings are rate-limited, not one per request')
  t.equal(logs.lines.filter((line) => /^redis taken as down/.test(line.msg)).length, 2, 'one warning each time Redis is taken as down (hung, then stopped)')
  const metrics = await app.inject({ method: 'GET', url: '/metrics', headers: adminHeaders })
  t.match(metrics.body, new RegExp(`gatehouse_rate_limit_fail_open_total ${app.rateLimits.failOpen}\\b`))
  t.equal((await httpRequest(`${url}/health`)).statusCode, 200)

  await redis.start()
  const started = Date.now()
  let recovered = false
  while (Date.now() - started < 5000 && !recovered) {
    await sleep(100)
    recovered = app.redis.ready
  }
  t.ok(recovered, `reconnected ${Date.now() - started} ms after Redis came back`)
  const after: number[] = []
  for (let i = 0; i < 4; i++) after.push((await timed(`${url}/api/x`)).status)
  t.same(after, [200, 200, 200, 429], 'limiting works again without a restart (the new Redis starts empty)')
})

t.test('the gateway starts and serves while Redis is unreachable', async (t) => {
  failOnUnhandledRejections(t)
  const redis = await startPrivateRedis(t)
  if (redis === null) return void t.plan(0, 'redis-server is not installed (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  await redis.stop()
  const upstream = await startUpstream(t)
  const started = Date.now()
  const { app, url } = await startGateway(t, { env: { REDIS_URL: redis.url }, build: { redisKeyPrefix: 'down:' } })
  t.ok(Date.now() - started < 3000, `started in ${Date.now() - started} ms`)
  await createRoute(app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 1, windowMs: 60_000, by: 'ip' } })
  const response = await httpRequest(`${url}/api/x`)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['x-ratelimit-limit'], '1')
  t.equal(response.headers['x-ratelimit-remaining'], undefined, 'no made-up remaining count while failing open')
  t.equal((await httpRequest(`${url}/api/x`)).statusCode, 200)
  await redis.start()
  const waitStart = Date.now()
  while (Date.now() - waitStart < 5000 && !app.redis.ready) await sleep(50)
  t.equal(app.redis.ready, true)
  t.same([(await httpRequest(`${url}/api/x`)).statusCode, (await httpRequest(`${url}/api/x`)).statusCode], [200, 429])
})
