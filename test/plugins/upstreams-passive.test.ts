import { createServer } from 'node:net'
import t, { type Test } from 'tap'
import { Pool } from 'undici'
import { ejectionCooldownMs } from '../../lib/health-check.js'
import { Target } from '../../lib/upstream-target.js'
import { adminHeaders, createRoute, failOnUnhandledRejections, httpRequest, startGateway, startUpstream } from '../helper.js'

failOnUnhandledRejections(t)

const PASSIVE = { failures: 3, cooldownMs: 10_000, maxCooldownMs: 40_000 }

function target (t: Test, passive = PASSIVE): Target {
  const pool = new Pool('http://127.0.0.1:9')
  t.teardown(() => pool.close())
  return new Target('http://127.0.0.1:9/base/', pool, passive)
}

/** A port nothing listens on: connections are refused. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

t.test('cool-down doubles on each ejection in a row and is capped', async (t) => {
  t.same([1, 2, 3, 4, 5, 40].map((n) => ejectionCooldownMs(PASSIVE, n)), [10_000, 20_000, 40_000, 40_000, 40_000, 40_000])
})

t.test('a target is ejected on its third failure in a row; a success in between resets the count', async (t) => {
  const tg = target(t)
  t.equal(tg.basePath, '/base')
  t.equal(tg.record('failure', 1000), null)
  t.equal(tg.record('failure', 1000), null)
  t.equal(tg.record('success', 1000), null)
  t.equal(tg.consecutiveFailures, 0)
  t.equal(tg.record('failure', 1000), null)
  t.equal(tg.record('failure', 1000), null)
  t.equal(tg.record('failure', 1000), 'ejected')
  t.equal(tg.healthy, false)
  t.equal(tg.ejectedUntil, 11_000)
  t.equal(tg.ejectionsTotal, 1)
  t.equal(tg.selectable(10_999), false)
  t.equal(tg.waitMs(5000), 6000)
})

t.test('after the cool-down exactly one trial request is admitted; its success restores the target', async (t) => {
  const tg = target(t)
  for (let i = 0; i < 3; i++) tg.record('failure', 0)
  t.equal(tg.selectable(10_000), true, 'half-open at the end of the cool-down')
  tg.chosen()
  t.equal(tg.trialInFlight, true)
  t.equal(tg.selectable(10_001), false, 'no second request while the trial runs')
  t.equal(tg.record('success', 10_050), 'recovered')
  t.equal(tg.healthy, true)
  t.equal(tg.ejectedUntil, null)
  t.equal(tg.trialInFlight, false)
  t.equal(tg.selectable(10_051), true)
})

t.test('a failed trial ejects again for twice as long; an aborted trial lets the next request try', async (t) => {
  const tg = target(t)
  for (let i = 0; i < 3; i++) tg.record('failure', 0)
  tg.chosen()
  t.equal(tg.record('aborted', 10_010), null)
  t.equal(tg.selectable(10_010), true, 'the client left: the trial is free again')
  tg.chosen()
  t.equal(tg.record('failure', 10_020), 'ejected')
  t.equal(tg.ejectedUntil, 30_020)
  t.equal(tg.trialInFlight, false)
  t.equal(tg.selectable(30_019), false)
  t.equal(tg.selectable(30_020), true)
  tg.chosen()
  t.equal(tg.record('failure', 30_030), 'ejected')
  t.equal(tg.ejectedUntil, 70_030)
  t.equal(tg.ejectionsTotal, 3)
})

t.test('late answers of requests sent before an ejection neither end nor extend it', async (t) => {
  const tg = target(t)
  for (let i = 0; i < 3; i++) tg.record('failure', 0)
  t.equal(tg.record('success', 100), null)
  t.equal(tg.ejectedUntil, 10_000)
  t.equal(tg.record('failure', 200), null)
  t.equal(tg.ejectedUntil, 10_000)
})

t.test('a target that stayed up longer than the cap starts again from the base cool-down', async (t) => {
  const tg = target(t)
  for (let i = 0; i < 3; i++) tg.record('failure', 0)
  tg.chosen()
  tg.record('failure', 10_000) // 2nd in a row: 20 s
  tg.chosen()
  t.equal(tg.record('success', 30_000), 'recovered')
  for (let i = 0; i < 3; i++) tg.record('failure', 31_000)
  t.equal(tg.ejectedUntil, 31_000 + 40_000, '3rd ejection soon after: still growing')
  tg.chosen()
  tg.record('success', 71_000)
  for (let i = 0; i < 3; i++) tg.record('failure', 71_000 + 40_001)
  t.equal(tg.ejectedUntil, 111_001 + 10_000, 'up for longer than the cap: base cool-down')
})

t.test('5xx answers eject a target; traffic avoids it, one trial after the cool-down brings it back', async (t) => {
  let broken = true
  const flaky = await startUpstream(t, (_req, res) => {
    res.statusCode = broken ? 500 : 200
    res.end('f')
  })
  const steady = await startUpstream(t, (_req, res) => { res.end('s') })
  const { app, url } = await startGateway(t, { build: { upstreams: { passiveHealth: { cooldownMs: 3000 } } } })
  await createRoute(app, { name: 'pair', path: '/', targets: [{ url: flaky.url, weight: 1 }, { url: steady.url, weight: 1 }] })
  const flakyTarget = app.upstreams.target(flaky.url)

  const statuses: number[] = []
  for (let i = 0; i < 6; i++) statuses.push((await httpRequest(`${url}/x`)).statusCode)
  t.same(statuses, [500, 200, 500, 200, 500, 200], '5xx answers are passed through, not retried')
  t.equal(flakyTarget?.healthy, false)
  t.equal(flakyTarget?.consecutiveFailures, 3)
  t.type(flakyTarget?.ejectedUntil, 'number')

  const ejectedUntil = flakyTarget?.ejectedUntil as number
  let during = ''
  for (let i = 0; i < 10 && Date.now() < ejectedUntil - 200; i++) during += (await httpRequest(`${url}/x`)).body
  t.match(during, /^s+$/, 'only the healthy target serves while the other is ejected')
  t.equal(flaky.requests.length, 3, 'no request reaches an ejected target')

  broken = false
  await new Promise((resolve) => setTimeout(resolve, ejectedUntil - Date.now() + 20))
  const after = await Promise.all(Array.from({ length: 4 }, async () => (await httpRequest(`${url}/x`)).body))
  t.equal(after.filter((body) => body === 'f').length, 1, 'exactly one trial request in the half-open state')
  t.equal(flakyTarget?.healthy, true)
  t.equal(flakyTarget?.ejectedUntil, null)
  let served = ''
  for (let i = 0; i < 4; i++) served += (await httpRequest(`${url}/x`)).body
  t.same([...served].sort().join(''), 'ffss', 'back in the rotation')
})

t.test('a target that keeps failing its trials is ejected for longer each time', async (t) => {
  const port = await closedPort()
  const steady = await startUpstream(t, (_req, res) => { res.end('s') })
  const { app, url } = await startGateway(t, { build: { upstreams: { passiveHealth: { cooldownMs: 1000, maxCooldownMs: 10_000 } } } })
  const dead = `http://127.0.0.1:${port}`
  await createRoute(app, { name: 'pair', path: '/', retries: 0, targets: [{ url: dead, weight: 1 }, { url: steady.url, weight: 1 }] })
  const deadTarget = app.upstreams.target(dead)

  const first: number[] = []
  for (let i = 0; i < 6; i++) first.push((await httpRequest(`${url}/x`)).statusCode)
  t.same(first, [502, 200, 502, 200, 502, 200], 'refused connections count as failures')
  t.equal(deadTarget?.ejectionStreak, 1)

  await new Promise((resolve) => setTimeout(resolve, (deadTarget?.ejectedUntil as number) - Date.now() + 20))
  const next = [(await httpRequest(`${url}/x`)).statusCode, (await httpRequest(`${url}/x`)).statusCode]
  t.same(next.sort(), [200, 502], 'one trial reaches the dead target and fails')
  t.equal(deadTarget?.ejectionStreak, 2)
  const remaining = (deadTarget?.ejectedUntil as number) - Date.now()
  t.ok(remaining > 1000 && remaining <= 2000, `second cool-down is doubled (${remaining} ms left of 2000)`)
})

t.test('when every target is ejected the route answers 503 with Retry-After, without contacting them', async (t) => {
  let hits = 0
  const failing = await startUpstream(t, (_req, res) => {
    hits++
    res.statusCode = 503
    res.end('down')
  })
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'solo', path: '/', targets: [{ url: failing.url, weight: 1 }] })
  for (let i = 0; i < 3; i++) t.equal((await httpRequest(`${url}/x`)).statusCode, 503)
  t.equal(hits, 3)

  const response = await httpRequest(`${url}/x`, { headers: { 'x-request-id': 'all-ejected-1' } })
  t.equal(response.statusCode, 503)
  t.equal(response.headers['retry-after'], '10', 'the default cool-down is 10 s')
  t.equal(response.headers['content-type'], 'application/json; charset=utf-8')
  t.same(response.json(), { statusCode: 503, error: 'Service Unavailable', message: 'no healthy upstream target', requestId: 'all-ejected-1' })
  t.equal(hits, 3, 'the dead upstream is not hammered')
})

t.test('ejection state is shown by /admin/status and exported on /metrics', async (t) => {
  const port = await closedPort()
  const { app, url } = await startGateway(t)
  const dead = `http://127.0.0.1:${port}`
  const route = await createRoute(app, { name: 'solo', path: '/', targets: [{ url: dead, weight: 1 }] })
  for (let i = 0; i < 3; i++) await httpRequest(`${url}/x`)
  const ejectedUntil = app.upstreams.target(dead)?.ejectedUntil as number

  const status = await app.inject({ method: 'GET', url: '/admin/status', headers: adminHeaders })
  t.equal(status.statusCode, 200)
  t.same(status.json().targets, [{
    routeId: route.id,
    url: dead,
    healthy: false,
    inFlight: 0,
    consecutiveFailures: 3,
    ejectedUntil: new Date(ejectedUntil).toISOString(),
    ejectionsTotal: 1,
    activeHealthy: null
  }])

  const scrape = await app.inject({ method: 'GET', url: '/metrics', headers: adminHeaders })
  t.equal(scrape.statusCode, 200)
  const text = scrape.body
  t.match(text, `gatehouse_upstream_target_healthy{target="${dead}"} 0`)
  t.match(text, `gatehouse_upstream_target_ejected{target="${dead}"} 1`)
  t.match(text, `gatehouse_upstream_target_ejections_total{target="${dead}"} 1`)
  t.match(text, `gatehouse_upstream_target_consecutive_failures{target="${dead}"} 3`)
  t.match(text, `gatehouse_upstream_target_in_flight{target="${dead}"} 0`)
  t.match(text, `gatehouse_upstream_target_active_healthy{target="${dead}"} -1`)
})
