import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { adminHeaders, createRoute, failOnUnhandledRejections, freePort, httpRequest, startGateway, startUpstream } from '../helper.js'

/** Every sample of a Prometheus text body: `name{labels}` → value. */
function samples (body: string): Map<string, number> {
  const result = new Map<string, number>()
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    result.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return result
}

async function scrape (url: string): Promise<Map<string, number>> {
  const response = await httpRequest(`${url}/metrics`, { headers: adminHeaders })
  if (response.statusCode !== 200) throw new Error(`/metrics answered ${response.statusCode}`)
  return samples(response.body)
}

const series = (name: string, route: string, method: string, statusClass: string, extra = ''): string =>
  `${name}{route="${route}",method="${method}",status_class="${statusClass}"${extra}}`

t.test('request counter and histogram move by exactly the requests sent, labelled by route name, never raw paths', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'users', path: '/users', targets: [{ url: upstream.url, weight: 1 }] })
  const before = await scrape(url)

  for (let i = 0; i < 7; i++) t.equal((await httpRequest(`${url}/users/${i}?page=${i}`)).statusCode, 200)
  for (let i = 0; i < 2; i++) t.equal((await httpRequest(`${url}/users/new`, { method: 'POST', body: 'x' })).statusCode, 200)
  for (let i = 0; i < 3; i++) t.equal((await httpRequest(`${url}/unknown/${i}`)).statusCode, 404)

  const after = await scrape(url)
  const delta = (key: string): number => (after.get(key) ?? 0) - (before.get(key) ?? 0)
  t.equal(delta(series('gatehouse_requests_total', 'users', 'GET', '2xx')), 7)
  t.equal(delta(series('gatehouse_requests_total', 'users', 'POST', '2xx')), 2)
  t.equal(delta(series('gatehouse_requests_total', '(none)', 'GET', '4xx')), 3)
  t.equal(delta(series('gatehouse_request_duration_seconds_count', 'users', 'GET', '2xx')), 7)
  t.equal(delta(series('gatehouse_request_duration_seconds_bucket', 'users', 'GET', '2xx', ',le="+Inf"')), 7)
  t.ok(delta(series('gatehouse_request_duration_seconds_sum', 'users', 'GET', '2xx')) > 0)

  const requestSeries = [...after.keys()].filter((key) => key.startsWith('gatehouse_requests_total{'))
  t.same(requestSeries.sort(), [
    series('gatehouse_requests_total', '(none)', 'GET', '4xx'),
    series('gatehouse_requests_total', 'users', 'GET', '2xx'),
    series('gatehouse_requests_total', 'users', 'POST', '2xx')
  ], 'one series per route name, method and status class; no path appears')
  const body = (await httpRequest(`${url}/metrics`, { headers: adminHeaders })).body
  t.notMatch(body, /\/users\/|\/unknown\//, 'raw paths never become labels')

  // Buckets are cumulative and end at the count.
  const buckets = [...after.entries()].filter(([key]) => key.startsWith('gatehouse_request_duration_seconds_bucket{route="users",method="GET"'))
  for (let i = 1; i < buckets.length; i++) t.ok(buckets[i][1] >= buckets[i - 1][1], `bucket ${buckets[i][0]} is cumulative`)
  // Sub-millisecond buckets first: the gateway's own overhead is often below 1 ms.
  t.same(buckets.map(([key]) => /le="([^"]+)"/.exec(key)?.[1]), ['0.0001', '0.00025', '0.0005', '0.001', '0.005', '0.01', '0.025',
    '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '60', '+Inf'])
})

t.test('the /admin/status totals match the metrics', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'a', path: '/a', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 4; i++) await httpRequest(`${url}/a`)
  await httpRequest(`${url}/b`)
  const status = (await httpRequest(`${url}/admin/status`, { headers: adminHeaders })).json()
  const metrics = await scrape(url)
  t.same(status.requests, { total: 5, byStatusClass: { '1xx': 0, '2xx': 4, '3xx': 0, '4xx': 1, '5xx': 0 } })
  t.equal(metrics.get('gatehouse_bytes_out_total'), status.bytesOut)
})

t.test('upstream errors by kind, rate-limited and blocked counters', async (t) => {
  failOnUnhandledRejections(t)
  const upstream = await startUpstream(t)
  const slow = await startUpstream(t, (_req, res) => { setTimeout(() => res.end('late'), 1000) })
  const deadPort = await freePort()
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'dead', path: '/dead', targets: [{ url: `http://127.0.0.1:${deadPort}`, weight: 1 }], retries: 0 })
  await createRoute(app, { name: 'slow', path: '/slow', targets: [{ url: slow.url, weight: 1 }], timeoutMs: 100, retries: 0 })
  await createRoute(app, { name: 'limited', path: '/limited', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 2, windowMs: 60_000, by: 'ip' } })
  const filter = await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload: { action: 'deny', path: '/private' } })
  t.equal(filter.statusCode, 201)

  t.equal((await httpRequest(`${url}/dead/x`)).statusCode, 502)
  t.equal((await httpRequest(`${url}/dead/y`)).statusCode, 502)
  t.equal((await httpRequest(`${url}/slow/x`)).statusCode, 504)
  const limited = []
  for (let i = 0; i < 5; i++) limited.push((await httpRequest(`${url}/limited/x`)).statusCode)
  t.same(limited, [200, 200, 429, 429, 429])
  t.equal((await httpRequest(`${url}/private/x`)).statusCode, 403)

  const metrics = await scrape(url)
  t.equal(metrics.get('gatehouse_upstream_errors_total{kind="connection"}'), 2)
  t.equal(metrics.get('gatehouse_upstream_errors_total{kind="timeout"}'), 1)
  t.equal(metrics.get('gatehouse_rate_limited_total'), 3)
  t.equal(metrics.get('gatehouse_blocked_total'), 1, 'the filter refusal is counted as blocked')
  t.equal(metrics.get(series('gatehouse_requests_total', 'dead', 'GET', '5xx')), 2)
  t.equal(metrics.get(series('gatehouse_requests_total', 'limited', 'GET', '4xx')), 3)
})

t.test('in-flight requests and open connections are gauges', async (t) => {
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  const upstream = await startUpstream(t, (_req, res) => { void held.then(() => res.end('done')) })
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'hold', path: '/hold', targets: [{ url: upstream.url, weight: 1 }] })
  const pending = httpRequest(`${url}/hold/x`)
  while (upstream.requests.length === 0) await sleep(10)
  const during = await scrape(url)
  t.equal(during.get('gatehouse_requests_in_flight'), 2, 'the held request and this scrape')
  t.ok((during.get('gatehouse_active_connections') ?? 0) >= 2)
  const status = (await httpRequest(`${url}/admin/status`, { headers: adminHeaders })).json()
  t.match(status.targets, [{ url: upstream.url, inFlight: 1, healthy: true }])
  release()
  t.equal((await pending).statusCode, 200)
  t.equal((await scrape(url)).get('gatehouse_requests_in_flight'), 1, 'only the scrape itself')
})

t.test('GET /metrics needs the admin token and is never proxied, even with a route on "/"', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'all', path: '/', targets: [{ url: upstream.url, weight: 1 }] })
  const anonymous = await httpRequest(`${url}/metrics`)
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.headers['www-authenticate'], 'Bearer realm="gatehouse-admin"')
  t.same(Object.keys(anonymous.json()).sort(), ['error', 'message', 'requestId', 'statusCode'])
  const wrong = await httpRequest(`${url}/metrics`, { headers: { authorization: 'Bearer nope' } })
  t.equal(wrong.statusCode, 401)
  const scraped = await httpRequest(`${url}/metrics`, { headers: adminHeaders })
  t.equal(scraped.statusCode, 200)
  t.equal(scraped.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
  t.equal(upstream.requests.length, 0, 'the upstream never saw /metrics')
  // Process metrics from prom-client's default collectors, on the app's own registry.
  for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
    t.match(scraped.body, new RegExp(`^${name} `, 'm'), name)
  }
  for (const name of ['gatehouse_requests_in_flight', 'gatehouse_audit_queue_depth', 'gatehouse_audit_dropped_rows_total', 'gatehouse_rate_limited_total', 'gatehouse_blocked_total']) {
    t.match(scraped.body, new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'), name)
  }
})

t.test('two apps in one process keep separate registries', async (t) => {
  const upstream = await startUpstream(t)
  const first = await startGateway(t)
  const second = await startGateway(t)
  await createRoute(first.app, { name: 'one', path: '/one', targets: [{ url: upstream.url, weight: 1 }] })
  await httpRequest(`${first.url}/one`)
  t.not(first.app.metrics.registry, second.app.metrics.registry)
  t.equal((await scrape(first.url)).get(series('gatehouse_requests_total', 'one', 'GET', '2xx')), 1)
  t.equal((await scrape(second.url)).get(series('gatehouse_requests_total', 'one', 'GET', '2xx')), undefined)
})

t.test('a deleted route\'s series go away, so route churn does not grow the label set', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  const route = await createRoute(app, { name: 'temp', path: '/temp', targets: [{ url: upstream.url, weight: 1 }] })
  await httpRequest(`${url}/temp`)
  t.equal((await scrape(url)).get(series('gatehouse_requests_total', 'temp', 'GET', '2xx')), 1)
  t.equal((await app.inject({ method: 'DELETE', url: `/admin/routes/${route.id}`, headers: adminHeaders })).statusCode, 204)
  t.equal((await scrape(url)).get(series('gatehouse_requests_total', 'temp', 'GET', '2xx')), undefined)
})

t.test('/metrics is in the OpenAPI document with the bearer scheme', async (t) => {
  const { url } = await startGateway(t)
  const doc = (await httpRequest(`${url}/docs/json`)).json()
  t.same(doc.paths['/metrics'].get.security, [{ bearerAuth: [] }])
  t.ok(doc.paths['/metrics'].get.responses['200'].content['text/plain'], 'documents the text answer')
  t.ok(doc.paths['/admin/status'].get, '/admin/status documented')
  t.ok(doc.paths['/admin/audit/logs'].get, '/admin/audit/logs documented')
  t.ok(doc.paths['/admin/audit/stats'].get, '/admin/audit/stats documented')
})
