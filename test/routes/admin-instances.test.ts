import path from 'node:path'
import t, { type Test } from 'tap'
import { openDatabase } from '../../repositories/connection.js'
import { adminHeaders, createRoute, httpRequest, postgresDatabase, startGateway, startUpstream, tempDir } from '../helper.js'

const fastHeartbeat = { instances: { heartbeatIntervalMs: 100 } }

async function until (check: () => Promise<boolean>, limitMs = 3000): Promise<void> {
  const started = Date.now()
  while (!await check()) {
    if (Date.now() - started > limitMs) throw new Error(`not seen within ${limitMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

interface Point { ts: string, requests: number, byStatusClass: Record<string, number>, p50: number | null, p95: number | null, p99: number | null, bytesOut: number }
const total = (items: Point[], pick: (point: Point) => number = (point) => point.requests): number => items.reduce((sum, point) => sum + pick(point), 0)

async function twoInstances (t: Test, databaseUrl: string): Promise<void> {
  const a = await startGateway(t, { databaseUrl, build: fastHeartbeat })
  const b = await startGateway(t, { databaseUrl, build: fastHeartbeat })
  const list = async () => (await httpRequest(`${a.url}/admin/instances`, { headers: adminHeaders })).json() as { items: Array<Record<string, unknown>>, total: number }

  await until(async () => (await list()).total === 2)
  const { items } = await list()
  const ids = items.map((item) => item.instanceId).sort()
  t.same(ids, [a.app.instance.id, b.app.instance.id].sort())
  for (const item of items) {
    t.equal(item.healthy, true)
    t.equal(item.pid, process.pid)
    t.equal(typeof item.host, 'string')
    t.match(item.version, /^\d+\.\d+\.\d+/)
    t.ok(Date.parse(item.lastSeenAt as string) >= Date.parse(item.startedAt as string))
    t.equal(item.configRevision, a.app.configChanges.version)
    t.equal(typeof item.requestsPerSecond, 'number')
  }
  t.equal((await httpRequest(`${a.url}/admin/instances`)).statusCode, 401)

  // B stops; its row stays until it is unseen for 15 s (aged here in the database rather than waited for).
  await b.app.close()
  const { db } = openDatabase(databaseUrl)
  t.teardown(() => db.destroy())
  await db.updateTable('instances').set({ last_seen_at: new Date(Date.now() - 16_000).toISOString() }).where('instance_id', '=', b.app.instance.id).execute()
  const later = await list()
  t.equal(later.total, 2)
  t.equal(later.items.find((item) => item.instanceId === b.app.instance.id)?.healthy, false)
  t.equal(later.items.find((item) => item.instanceId === a.app.instance.id)?.healthy, true)

  // Unseen for more than an hour: A's next heartbeat removes the row.
  await db.updateTable('instances').set({ last_seen_at: new Date(Date.now() - 3_601_000).toISOString() }).where('instance_id', '=', b.app.instance.id).execute()
  await until(async () => (await db.selectFrom('instances').select('instance_id').execute()).length === 1)
  t.same((await list()).items.map((item) => item.instanceId), [a.app.instance.id])
}

t.test('GET /admin/instances lists two instances sharing one SQLite file, marks the unseen one unhealthy and forgets it after an hour', async (t) => {
  await twoInstances(t, `sqlite:${path.join(tempDir(t), 'shared.db')}`)
})

t.test('the same on PostgreSQL', async (t) => {
  const databaseUrl = await postgresDatabase(t)
  if (databaseUrl === null) return void t.plan(0, 'PostgreSQL unreachable at 127.0.0.1:5432 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  await twoInstances(t, databaseUrl)
})

t.test('GET /admin/metrics/timeseries counts every request in its bucket, by status class and route', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('0123456789'))
  const gw = await startGateway(t, { build: fastHeartbeat })
  await createRoute(gw.app, { name: 'svc', path: '/svc', targets: [{ url: upstream.url, weight: 1 }] })
  await createRoute(gw.app, { name: 'other', path: '/other', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 7; i++) t.equal((await httpRequest(`${gw.url}/svc/${i}`)).statusCode, 200)
  for (let i = 0; i < 2; i++) t.equal((await httpRequest(`${gw.url}/other`)).statusCode, 200)
  for (let i = 0; i < 3; i++) t.equal((await httpRequest(`${gw.url}/nowhere/${i}`)).statusCode, 404)
  // Admin calls are not traffic.
  const get = async (query: string) => {
    const response = await httpRequest(`${gw.url}/admin/metrics/timeseries${query}`, { headers: adminHeaders })
    t.equal(response.statusCode, 200, query)
    return response.json() as { instanceId: string, scope: string, window: number, step: number, routeId: string | null, items: Point[] }
  }

  const all = await get('')
  t.equal(all.instanceId, gw.app.instance.id)
  t.equal(all.scope, 'instance')
  t.equal(all.items.length, 90, '900 s in steps of 10 s')
  t.equal(all.window, 900)
  t.equal(all.step, 10)
  for (const point of all.items) t.equal(Date.parse(point.ts) % 10_000, 0, 'steps start on the 10 s grid')
  t.equal(Date.parse(all.items[89].ts) - Date.parse(all.items[0].ts), 890_000)
  t.equal(total(all.items), 12)
  t.equal(total(all.items, (p) => p.byStatusClass['2xx']), 9)
  t.equal(total(all.items, (p) => p.byStatusClass['4xx']), 3)
  t.equal(total(all.items, (p) => p.byStatusClass['5xx']), 0)
  const busy = all.items.filter((point) => point.requests > 0)
  t.ok(busy.length >= 1 && busy.length <= 2, 'the requests fall in the last one or two buckets')
  for (const point of busy) {
    t.ok(point.p50 !== null && point.p50 > 0)
    t.ok(point.p50! <= point.p95! && point.p95! <= point.p99!)
  }
  t.ok(all.items.filter((point) => point.requests === 0).every((point) => point.p99 === null))

  const svc = await get('?route=svc&window=60&step=30')
  t.equal(svc.items.length, 2)
  t.equal(svc.routeId, gw.app.routeTable.routes.find((route) => route.name === 'svc')?.id)
  t.equal(total(svc.items), 7)
  t.ok(total(svc.items, (p) => p.bytesOut) > 7 * 10, 'bytes out include the bodies')
  const byId = await get(`?route=${svc.routeId!}&window=60&step=60`)
  t.equal(byId.items.length, 1)
  t.equal(total(byId.items), 7)
  t.equal(total((await get('?route=other')).items), 2)
})

t.test('scope=cluster sums two instances from their heartbeats and keeps each one\'s series', async (t) => {
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'shared.db')}`
  const upstream = await startUpstream(t)
  const a = await startGateway(t, { databaseUrl, build: fastHeartbeat })
  const b = await startGateway(t, { databaseUrl, build: fastHeartbeat })
  await createRoute(a.app, { name: 'svc', path: '/svc', targets: [{ url: upstream.url, weight: 1 }] })
  await until(async () => (await httpRequest(`${b.url}/svc`)).statusCode === 200)
  // B's one request above (plus any 404s while it had not loaded the route yet) is counted too.
  for (let i = 0; i < 5; i++) await httpRequest(`${a.url}/svc`)
  for (let i = 0; i < 4; i++) await httpRequest(`${b.url}/svc`)
  const bOwn = (await httpRequest(`${b.url}/admin/metrics/timeseries?window=120`, { headers: adminHeaders })).json() as { items: Point[] }
  const bCount = total(bOwn.items)
  t.ok(bCount >= 5)

  type Cluster = { scope: string, items: Point[], instances: Array<{ instanceId: string, items: Point[] }> }
  let cluster: Cluster | null = null
  await until(async () => {
    cluster = (await httpRequest(`${a.url}/admin/metrics/timeseries?scope=cluster&window=120&step=10`, { headers: adminHeaders })).json() as Cluster
    return total(cluster.items) === 5 + bCount
  })
  const seen = cluster! as Cluster
  t.equal(seen.scope, 'cluster')
  t.same(seen.instances.map((entry) => entry.instanceId).sort(), [a.app.instance.id, b.app.instance.id].sort())
  t.equal(total(seen.instances.find((entry) => entry.instanceId === a.app.instance.id)!.items), 5)
  t.equal(total(seen.instances.find((entry) => entry.instanceId === b.app.instance.id)!.items), bCount)
  // The sum is the sum of the parts, point by point.
  for (let i = 0; i < seen.items.length; i++) {
    t.equal(seen.items[i].requests, seen.instances.reduce((sum, entry) => sum + entry.items[i].requests, 0))
  }
  const routed = (await httpRequest(`${a.url}/admin/metrics/timeseries?scope=cluster&window=120&route=svc`, { headers: adminHeaders })).json() as Cluster
  t.equal(total(routed.items, (p) => p.byStatusClass['2xx']), 10)
})

t.test('GET /admin/metrics/timeseries refuses bad parameters naming them', async (t) => {
  const gw = await startGateway(t)
  const cases: Array<[string, number, RegExp]> = [
    ['?step=15', 400, /step/],
    ['?step=0', 400, /step/],
    ['?window=901', 400, /window/],
    ['?window=abc', 400, /window/],
    ['?window=60&step=120', 400, /step must be at most window/],
    ['?scope=everything', 400, /scope/],
    ['?color=blue', 400, /color/],
    ['?route=nope', 404, /no route nope/]
  ]
  for (const [query, status, message] of cases) {
    const response = await httpRequest(`${gw.url}/admin/metrics/timeseries${query}`, { headers: adminHeaders })
    t.equal(response.statusCode, status, query)
    t.match((response.json() as { message: string }).message, message, query)
  }
  t.equal((await httpRequest(`${gw.url}/admin/metrics/timeseries`)).statusCode, 401)
})
