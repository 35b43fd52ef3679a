import t, { type Test } from 'tap'
import pg from 'pg'
import type { FastifyInstance } from 'fastify'
import { insertAuditRows } from '../../repositories/audit.js'
import type { NewAuditLogRow } from '../../repositories/database.js'
import { POSTGRES_ADMIN_URL, adminHeaders, buildTestApp, createRoute, postgresDatabase, startUpstream } from '../helper.js'

const BASE = Date.now() - 30 * 60_000
const at = (offsetMs: number): string => new Date(BASE + offsetMs).toISOString()

/**
 * Known data: 100 request rows one second apart (durations 1..100 ms), 3 admin rows after
 * them, and 5 request rows two hours old (outside the default stats window).
 *   i % 10 = 0 → 502 upstream_error · 1 → 404 no_route (no route) · 2 → 429 rate_limited · else 200 proxied
 *   route: even i → route-a, odd i → route-b (except no_route)
 *   client: i < 60 → 10.0.0.1, i < 90 → 10.0.0.2, else 10.0.0.3
 */
function knownRows (): NewAuditLogRow[] {
  const rows: NewAuditLogRow[] = []
  for (let i = 0; i < 100; i++) {
    const kind = i % 10
    const [status, outcome] = kind === 0 ? [502, 'upstream_error'] : kind === 1 ? [404, 'no_route'] : kind === 2 ? [429, 'rate_limited'] : [200, 'proxied']
    rows.push({
      ts: at(i * 1000), event_type: 'request', request_id: `req-${i}`,
      client_ip: i < 60 ? '10.0.0.1' : i < 90 ? '10.0.0.2' : '10.0.0.3',
      method: 'GET', path: `/p/${i}`, route_id: kind === 1 ? null : i % 2 === 0 ? 'route-a' : 'route-b', consumer_id: null,
      status, outcome, duration_ms: i + 1, bytes_in: i, bytes_out: 100 + i, user_agent: 'ua', detail: null,
      trace_id: `${String(i).padStart(2, '0')}${'ab'.repeat(15)}`
    })
  }
  for (let i = 0; i < 3; i++) {
    rows.push({
      ts: at(100_000 + i * 1000), event_type: 'admin', request_id: `adm-${i}`, client_ip: '10.0.0.9', method: 'POST', path: '/admin/routes',
      route_id: 'route-a', consumer_id: null, status: null, outcome: 'admin', duration_ms: null, bytes_in: null, bytes_out: null, user_agent: 'ops',
      detail: JSON.stringify({ actor: 'admin-token', action: 'create', resource: 'route', id: 'route-a', before: null, after: { name: 'a' } })
    })
  }
  for (let i = 0; i < 5; i++) {
    rows.push({
      ts: new Date(Date.now() - 2 * 3600_000 + i).toISOString(), event_type: 'request', request_id: `old-${i}`, client_ip: '10.9.9.9',
      method: 'GET', path: '/old', route_id: 'route-a', consumer_id: null, status: 200, outcome: 'proxied', duration_ms: 1000,
      bytes_in: 0, bytes_out: 0, user_agent: null, detail: null
    })
  }
  return rows
}

async function get (app: FastifyInstance, url: string, headers: Record<string, string> = adminHeaders) {
  const response = await app.inject({ method: 'GET', url, headers })
  return { statusCode: response.statusCode, body: response.json() }
}

async function logs (app: FastifyInstance, query: string): Promise<{ items: Array<Record<string, any>>, total: number }> {
  const response = await get(app, `/admin/audit/logs?${query}`)
  if (response.statusCode !== 200) throw new Error(`logs?${query}: ${response.statusCode} ${JSON.stringify(response.body)}`)
  return response.body
}

/** The same assertions on SQLite and on PostgreSQL. */
async function auditApiBehaves (t: Test, app: FastifyInstance): Promise<void> {
  await insertAuditRows(app.db, knownRows())

  t.test('newest first, with every field', async (t) => {
    const all = await logs(app, 'limit=1000')
    t.equal(all.total, 108)
    t.equal(all.items.length, 108)
    t.same(all.items.slice(0, 4).map((item) => item.requestId), ['adm-2', 'adm-1', 'adm-0', 'req-99'])
    t.same(all.items.slice(-1).map((item) => item.requestId), ['old-0'])
    const timestamps = all.items.map((item) => item.ts as string)
    t.same(timestamps, [...timestamps].sort().reverse(), 'sorted by time, newest first')
    t.same(all.items.find((item) => item.requestId === 'req-12'), {
      id: all.items.find((item) => item.requestId === 'req-12')?.id,
      ts: at(12_000), eventType: 'request', requestId: 'req-12', clientIp: '10.0.0.1', method: 'GET', path: '/p/12',
      routeId: 'route-a', consumerId: null, status: 429, outcome: 'rate_limited', durationMs: 13, bytesIn: 12, bytesOut: 112, userAgent: 'ua', detail: null,
      traceId: `12${'ab'.repeat(15)}`
    })
    t.same(all.items[0].detail, { actor: 'admin-token', action: 'create', resource: 'route', id: 'route-a', before: null, after: { name: 'a' } }, 'admin detail is an object')
  })

  t.test('every filter, alone and combined', async (t) => {
    t.equal((await logs(app, 'eventType=admin')).total, 3)
    t.equal((await logs(app, 'eventType=request')).total, 105)
    t.equal((await logs(app, 'clientIp=10.0.0.3')).total, 10)
    t.equal((await logs(app, 'routeId=route-a')).total, 50 + 3 + 5)
    t.equal((await logs(app, 'routeId=route-b')).total, 40)
    t.equal((await logs(app, 'status=429')).total, 10)
    t.equal((await logs(app, 'outcome=no_route')).total, 10)
    t.equal((await logs(app, 'outcome=admin')).total, 3)
    const window = await logs(app, `since=${encodeURIComponent(at(10_000))}&until=${encodeURIComponent(at(20_000))}`)
    t.same(window.items.map((item) => item.requestId), ['req-19', 'req-18', 'req-17', 'req-16', 'req-15', 'req-14', 'req-13', 'req-12', 'req-11', 'req-10'],
      'since inclusive, until exclusive')
    // A since with an offset means the same instant.
    const shifted = new Date(BASE + 95_000 + 2 * 3600_000).toISOString().replace('Z', '+02:00')
    t.equal((await logs(app, `since=${encodeURIComponent(shifted)}&eventType=request`)).total, 5)
    t.equal((await logs(app, 'clientIp=10.0.0.1&status=200')).total, 42)
    t.equal((await logs(app, 'clientIp=10.0.0.2&outcome=upstream_error&routeId=route-a')).total, 3)
  })

  t.test('limit and offset page through the same order', async (t) => {
    const all = (await logs(app, 'limit=1000&eventType=request')).items.map((item) => item.id)
    const paged: unknown[] = []
    for (let offset = 0; offset < 105; offset += 20) {
      const page = await logs(app, `eventType=request&limit=20&offset=${offset}`)
      t.equal(page.total, 105)
      t.equal(page.items.length, Math.min(20, 105 - offset))
      paged.push(...page.items.map((item) => item.id))
    }
    t.same(paged, all)
    t.same((await logs(app, 'offset=500')).items, [])
    t.equal((await logs(app, '')).items.length, 100, 'limit defaults to 100')
  })

  t.test('filter values that look like SQL are just strings', async (t) => {
    for (const hostile of ["' OR '1'='1", "x'); DROP TABLE audit_log; --", '%', '_', '10.0.0.1\' --']) {
      t.equal((await logs(app, `clientIp=${encodeURIComponent(hostile)}`)).total, 0, `clientIp=${hostile}`)
      t.equal((await logs(app, `routeId=${encodeURIComponent(hostile)}`)).total, 0, `routeId=${hostile}`)
    }
    t.equal((await logs(app, 'limit=1')).total, 108, 'the table is intact')
    await insertAuditRows(app.db, [{ ...knownRows()[0], request_id: 'hostile', client_ip: "' OR '1'='1" }])
    const found = await logs(app, `clientIp=${encodeURIComponent("' OR '1'='1")}`)
    t.same(found.items.map((item) => item.requestId), ['hostile'], 'a stored hostile value is matched exactly')
    await app.db.deleteFrom('audit_log').where('request_id', '=', 'hostile').execute()
  })

  t.test('stats: counts, top client IPs and percentiles over the default last hour', async (t) => {
    const { statusCode, body } = await get(app, '/admin/audit/stats')
    t.equal(statusCode, 200)
    t.equal(body.total, 103)
    t.same(body.byEventType, { request: 100, admin: 3 })
    t.same(body.byStatusClass, { '2xx': 70, '4xx': 20, '5xx': 10 })
    t.same(body.byOutcome, { proxied: 70, no_route: 10, rate_limited: 10, upstream_error: 10, admin: 3 })
    t.same(body.byRoute, [
      { routeId: 'route-a', routeName: null, count: 50 },
      { routeId: 'route-b', routeName: null, count: 40 },
      { routeId: null, routeName: null, count: 10 }
    ])
    t.same(body.topClientIps, [{ clientIp: '10.0.0.1', count: 60 }, { clientIp: '10.0.0.2', count: 30 }, { clientIp: '10.0.0.3', count: 10 }])
    t.same(body.latencyMs, { p50: 50, p95: 95, p99: 99 })
    t.equal(Date.parse(body.until) - Date.parse(body.since), 3600_000)
  })

  t.test('stats over an explicit window, and top', async (t) => {
    const { body } = await get(app, `/admin/audit/stats?since=${encodeURIComponent(at(10_000))}&until=${encodeURIComponent(at(20_000))}&top=1`)
    t.equal(body.total, 10)
    t.same(body.latencyMs, { p50: 15, p95: 20, p99: 20 }, 'durations 11..20')
    t.same(body.topClientIps, [{ clientIp: '10.0.0.1', count: 10 }])
    t.same(body.byStatusClass, { '2xx': 7, '4xx': 2, '5xx': 1 })
    const empty = await get(app, `/admin/audit/stats?since=${encodeURIComponent(at(-100_000))}&until=${encodeURIComponent(at(-50_000))}`)
    t.same(empty.body.latencyMs, { p50: null, p95: null, p99: null })
    t.equal(empty.body.total, 0)
    const wide = await get(app, `/admin/audit/stats?since=${encodeURIComponent(new Date(Date.now() - 3 * 3600_000).toISOString())}`)
    t.equal(wide.body.byEventType.request, 105, 'the old rows count once the window includes them')
  })
}

t.test('SQLite', async (t) => {
  const app = await buildTestApp(t)
  await app.ready()
  await auditApiBehaves(t, app)
})

async function postgresSkipReason (): Promise<string | false> {
  if (process.env.GATEHOUSE_REQUIRE_SERVICES === '1') return false
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    return false
  } catch (err) {
    return `PostgreSQL unreachable at ${POSTGRES_ADMIN_URL}: ${(err as Error).message}`
  } finally {
    await client.end().catch(() => {})
  }
}

t.test('PostgreSQL (a fresh database)', { skip: await postgresSkipReason() }, async (t) => {
  const databaseUrl = await postgresDatabase(t)
  if (databaseUrl === null) throw new Error('PostgreSQL became unreachable')
  const app = await buildTestApp(t, { databaseUrl })
  await app.ready()
  await auditApiBehaves(t, app)
})

t.test('routeId accepts a current route\'s name; stats name the routes that still exist', async (t) => {
  const upstream = await startUpstream(t)
  const app = await buildTestApp(t)
  const route = await createRoute(app, { name: 'named', path: '/named', targets: [{ url: upstream.url, weight: 1 }] })
  await insertAuditRows(app.db, knownRows().slice(0, 4).map((row, i) => ({ ...row, request_id: `n-${i}`, route_id: route.id, ts: new Date().toISOString() })))
  t.same((await logs(app, 'routeId=named&eventType=request')).items.map((item) => item.routeId), [route.id, route.id, route.id, route.id])
  t.equal((await logs(app, `routeId=${route.id}&eventType=request`)).total, 4)
  const { body } = await get(app, '/admin/audit/stats')
  t.same(body.byRoute, [{ routeId: route.id, routeName: 'named', count: 4 }])
})

t.test('validation and auth', async (t) => {
  const app = await buildTestApp(t)
  for (const query of ['limit=0', 'limit=1001', 'offset=-1', 'status=abc', 'status=99', 'outcome=weird', 'eventType=other', 'since=yesterday', 'until=2026-13-01T00:00:00Z', 'bogus=1']) {
    const response = await get(app, `/admin/audit/logs?${query}`)
    t.equal(response.statusCode, 400, query)
    t.same(Object.keys(response.body).sort(), ['error', 'message', 'requestId', 'statusCode'])
  }
  for (const query of ['top=0', 'top=101', 'since=nope']) t.equal((await get(app, `/admin/audit/stats?${query}`)).statusCode, 400, query)
  const since = new Date(Date.now() - 1000).toISOString()
  const until = new Date(Date.now() - 2000).toISOString()
  for (const path of ['/admin/audit/stats', '/admin/audit/logs']) {
    const backwards = await get(app, `${path}?since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`)
    t.equal(backwards.statusCode, 400, `${path}: an explicit until before since`)
    t.equal(backwards.body.message, `since (${since}) must not be after until (${until})`)
  }
  t.equal((await get(app, '/admin/audit/logs', {})).statusCode, 401)
  t.equal((await get(app, '/admin/audit/stats', { authorization: 'Bearer wrong' })).statusCode, 401)
})

t.test('a since later than now is an empty window, not an error (no until sent)', async (t) => {
  const app = await buildTestApp(t)
  await insertAuditRows(app.db, knownRows())
  const future = new Date(Date.now() + 3600_000).toISOString()
  const stats = await get(app, `/admin/audit/stats?since=${encodeURIComponent(future)}`)
  t.equal(stats.statusCode, 200)
  t.equal(stats.body.since, future)
  t.equal(stats.body.until, future, 'the window is [since, since)')
  t.equal(stats.body.total, 0)
  t.same(stats.body.byRoute, [])
  t.same(stats.body.topClientIps, [])
  t.same(stats.body.latencyMs, { p50: null, p95: null, p99: null })
  const logs = await get(app, `/admin/audit/logs?since=${encodeURIComponent(future)}`)
  t.equal(logs.statusCode, 200)
  t.same(logs.body, { items: [], total: 0 })
})
