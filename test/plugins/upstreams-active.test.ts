import type { IncomingMessage, ServerResponse } from 'node:http'
import t, { type Test } from 'tap'
import { adminHeaders, buildTestApp, createRoute, failOnUnhandledRejections, httpRequest, startGateway, startUpstream, type Upstream } from '../helper.js'

failOnUnhandledRejections(t)

const CHECK = { path: '/health', intervalMs: 100, timeoutMs: 80, healthyThreshold: 1, unhealthyThreshold: 2 }

interface Switchable extends Upstream {
  /** What /health answers now: a status, or 'hang' to never answer. */
  health: number | 'hang'
  probes: () => number
}

async function switchable (t: Test, name: string): Promise<Switchable> {
  const state = { health: 200 as number | 'hang' }
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.url?.endsWith('/health') === true) {
      if (state.health !== 'hang') {
        res.statusCode = state.health
        res.end()
      }
      return
    }
    res.end(name)
  }
  const upstream = await startUpstream(t, handler)
  // Accessors, not Object.assign (which would copy the getter's value once).
  return Object.defineProperties(upstream, {
    health: { get: () => state.health, set: (value: number | 'hang') => { state.health = value } },
    probes: { value: () => upstream.requests.filter((request) => request.url.endsWith('/health')).length }
  }) as Switchable
}

t.test('an active check takes a failing target out within 3 intervals and brings it back within 3', async (t) => {
  const a = await switchable(t, 'a')
  const b = await switchable(t, 'b')
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'pair', path: '/', healthCheck: CHECK, targets: [{ url: a.url, weight: 1 }, { url: b.url, weight: 1 }] })
  const target = app.upstreams.target(a.url)
  t.equal(target?.activeHealthy, true, 'optimistic until probed')
  await waitFor(() => a.probes() >= 1)
  t.equal(a.requests[0].url, '/health')
  t.equal(a.requests[0].headers['user-agent'], 'gatehouse-health-check')

  a.health = 503
  const down = Date.now()
  await waitFor(() => target?.activeHealthy === false, 3 * CHECK.intervalMs + 1000)
  t.ok(Date.now() - down <= 3 * CHECK.intervalMs + 250, `down after ${Date.now() - down} ms`)
  t.equal(target?.healthy, false)
  let served = ''
  for (let i = 0; i < 6; i++) served += (await httpRequest(`${url}/x`)).body
  t.equal(served, 'bbbbbb', 'traffic avoids the target its check marks down')

  a.health = 200
  const up = Date.now()
  await waitFor(() => target?.activeHealthy === true, 3 * CHECK.intervalMs + 1000)
  t.ok(Date.now() - up <= 3 * CHECK.intervalMs + 250, `up after ${Date.now() - up} ms`)
  t.equal(target?.healthy, true)
  served = ''
  for (let i = 0; i < 4; i++) served += (await httpRequest(`${url}/x`)).body
  t.same([...served].sort().join(''), 'aabb')
})

t.test('a probe that gets no answer within timeoutMs counts as down', async (t) => {
  const a = await switchable(t, 'a')
  const { app } = await startGateway(t)
  await createRoute(app, { name: 'solo', path: '/', healthCheck: CHECK, targets: [{ url: a.url, weight: 1 }] })
  a.health = 'hang'
  await waitFor(() => app.upstreams.target(a.url)?.activeHealthy === false, 2000)
  t.equal(app.upstreams.target(a.url)?.healthy, false)
})

t.test('every target down by its active check: 503 with Retry-After of one interval, rounded up', async (t) => {
  const a = await switchable(t, 'a')
  a.health = 500
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'solo', path: '/', healthCheck: { ...CHECK, intervalMs: 1500, unhealthyThreshold: 1 }, targets: [{ url: a.url, weight: 1 }] })
  await waitFor(() => app.upstreams.target(a.url)?.activeHealthy === false, 2000)
  const response = await httpRequest(`${url}/x`)
  t.equal(response.statusCode, 503)
  t.equal(response.headers['retry-after'], '2')
  t.equal(response.json().message, 'no healthy upstream target')
})

t.test('a passively ejected target is restored when its active check sees it come back', async (t) => {
  const a = await switchable(t, 'a')
  const { app } = await startGateway(t)
  await createRoute(app, { name: 'solo', path: '/', healthCheck: CHECK, targets: [{ url: a.url, weight: 1 }] })
  const target = app.upstreams.target(a.url)
  if (target === undefined) throw new Error('no target')
  for (let i = 0; i < 3; i++) app.upstreams.report(target, 'failure')
  t.type(target.ejectedUntil, 'number')
  a.health = 500
  await waitFor(() => target.activeHealthy === false, 2000)
  a.health = 200
  await waitFor(() => target.activeHealthy === true, 2000)
  t.equal(target.ejectedUntil, null)
  t.equal(target.healthy, true)
  t.equal(target.consecutiveFailures, 0)
})

t.test('one prober per target URL, probing under the target\'s base path', async (t) => {
  const a = await switchable(t, 'a')
  const { app } = await startGateway(t)
  await createRoute(app, { name: 'one', path: '/one', healthCheck: { ...CHECK, intervalMs: 200 }, targets: [{ url: `${a.url}/v2`, weight: 1 }] })
  await createRoute(app, { name: 'two', path: '/two', healthCheck: { ...CHECK, intervalMs: 200 }, targets: [{ url: `${a.url}/v2`, weight: 2 }] })
  const started = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const probes = a.probes()
  const elapsed = Date.now() - started
  t.ok(probes >= 3 && probes <= Math.ceil(elapsed / 200) + 2, `${probes} probes in ${elapsed} ms at one per 200 ms`)
  t.ok(a.requests.every((request) => request.url === '/v2/health'))
  t.equal(app.upstreams.healthCheck(`${a.url}/v2`)?.config.intervalMs, 200)
})

t.test('deleting the route stops its prober; disabling it too; the target forgets its verdict', async (t) => {
  const a = await switchable(t, 'a')
  const b = await switchable(t, 'b')
  const { app } = await startGateway(t)
  const route = await createRoute(app, { name: 'gone', path: '/gone', healthCheck: CHECK, targets: [{ url: a.url, weight: 1 }] })
  const other = await createRoute(app, { name: 'off', path: '/off', healthCheck: CHECK, targets: [{ url: b.url, weight: 1 }] })
  await waitFor(() => a.probes() >= 2 && b.probes() >= 2)

  const deleted = await app.inject({ method: 'DELETE', url: `/admin/routes/${route.id}`, headers: adminHeaders })
  t.equal(deleted.statusCode, 204)
  t.equal(app.upstreams.healthCheck(a.url), undefined)
  const disabled = await app.inject({ method: 'PATCH', url: `/admin/routes/${other.id}`, headers: adminHeaders, payload: { enabled: false } })
  t.equal(disabled.statusCode, 200)
  t.equal(app.upstreams.healthCheck(b.url), undefined)
  t.equal(app.upstreams.target(b.url)?.activeHealthy, null)

  await new Promise((resolve) => setTimeout(resolve, 50)) // a probe already under way may land
  const afterA = a.probes()
  const afterB = b.probes()
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.equal(a.probes(), afterA, 'no probes after the route is deleted')
  t.equal(b.probes(), afterB, 'no probes after the route is disabled')
})

t.test('changing the check restarts its prober with the new settings; removing it stops probing', async (t) => {
  const a = await switchable(t, 'a')
  const { app } = await startGateway(t)
  const route = await createRoute(app, { name: 'solo', path: '/', healthCheck: CHECK, targets: [{ url: a.url, weight: 1 }] })
  const first = app.upstreams.healthCheck(a.url)
  const changed = await app.inject({ method: 'PATCH', url: `/admin/routes/${route.id}`, headers: adminHeaders, payload: { healthCheck: { ...CHECK, path: '/ready' } } })
  t.equal(changed.statusCode, 200)
  const second = app.upstreams.healthCheck(a.url)
  t.not(second, first)
  t.equal(second?.config.path, '/ready')
  await waitFor(() => a.requests.some((request) => request.url === '/ready'))

  const removed = await app.inject({ method: 'PATCH', url: `/admin/routes/${route.id}`, headers: adminHeaders, payload: { healthCheck: null } })
  t.equal(removed.statusCode, 200)
  t.equal(app.upstreams.healthCheck(a.url), undefined)
  t.equal(app.upstreams.target(a.url)?.activeHealthy, null)
})

t.test('closing the app stops every prober and its timers', async (t) => {
  const a = await switchable(t, 'a')
  const app = await buildTestApp(t)
  await createRoute(app, { name: 'solo', path: '/', healthCheck: CHECK, targets: [{ url: a.url, weight: 1 }] })
  await waitFor(() => a.probes() >= 2)
  await app.close()
  const after = a.probes()
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.equal(a.probes(), after)
})

async function waitFor (condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
