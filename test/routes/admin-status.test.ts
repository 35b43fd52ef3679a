import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { adminHeaders, createRoute, freePort, httpRequest, rawHttp, rawStatus, startGateway, startUpstream } from '../helper.js'
import { version } from '../../lib/version.js'

t.test('GET /admin/status answers its documented fields with exact counts', async (t) => {
  const upstream = await startUpstream(t)
  const second = await startUpstream(t)
  const deadPort = await freePort()
  const { app, url, port } = await startGateway(t)
  const api = await createRoute(app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }, { url: second.url, weight: 1 }] })
  const limited = await createRoute(app, { name: 'limited', path: '/limited', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 1, windowMs: 60_000, by: 'ip' } })
  const dead = await createRoute(app, { name: 'dead', path: '/dead', targets: [{ url: `http://127.0.0.1:${deadPort}`, weight: 1 }], retries: 0 })
  t.equal((await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload: { action: 'deny', path: '/api/private' } })).statusCode, 201)

  for (let i = 0; i < 3; i++) t.equal((await httpRequest(`${url}/api/x`, { method: 'POST', body: '12345678' })).statusCode, 200)
  t.equal((await httpRequest(`${url}/limited`)).statusCode, 200)
  t.equal((await httpRequest(`${url}/limited`)).statusCode, 429)
  t.equal((await httpRequest(`${url}/api/private/x`)).statusCode, 403)
  t.equal((await httpRequest(`${url}/dead`)).statusCode, 502)
  t.equal((await httpRequest(`${url}/none`)).statusCode, 404)
  t.equal(rawStatus(await rawHttp(port, 'NOT HTTP\r\n\r\n')), 400)
  // Admin and health calls are not traffic.
  await httpRequest(`${url}/health`)
  await httpRequest(`${url}/admin/routes`, { headers: adminHeaders })

  const response = await httpRequest(`${url}/admin/status`, { headers: adminHeaders })
  t.equal(response.statusCode, 200)
  const status = response.json()
  t.same(Object.keys(status).sort(), ['activeConnections', 'audit', 'blocked', 'bytesIn', 'bytesOut', 'cache', 'configRevision', 'egress', 'instanceId', 'logSinks', 'maxConnections', 'rateLimited', 'redis', 'requests', 'routes', 'targets', 'uptimeSeconds', 'version'])
  t.same(status.cache, { entries: 0, bytes: 0, hits: 0, misses: 0, stale: 0, bypass: 0, revalidated: 0 }, 'no cached route')
  t.same(status.logSinks, [], 'no LOG_SINKS')
  t.same(status.egress, { activeTunnels: 0, activeRequests: 0, bytesIn: 0, bytesOut: 0, allowed: 0, blocked: 0 }, 'no EGRESS_PORT: all 0')
  t.same(status.redis, { configured: false, up: false, since: null, consecutiveFailures: 0, lastError: null, bypassed: 0 }, 'no REDIS_URL')
  t.equal(status.version, version)
  t.equal(status.configRevision, 4, 'three routes and a filter: four configuration revisions')
  t.equal(status.maxConnections, 10_000, 'the MAX_CONNECTIONS default')
  t.match(status.instanceId, /^.+-\d+-[0-9a-f]{6}$/)
  t.ok(Number.isInteger(status.uptimeSeconds) && status.uptimeSeconds >= 0)
  t.equal(status.routes, 3)
  t.same(status.requests, { total: 9, byStatusClass: { '1xx': 0, '2xx': 4, '3xx': 0, '4xx': 4, '5xx': 1 } })
  t.equal(status.rateLimited, 1)
  t.equal(status.blocked, 2, 'the filter refusal and the malformed request')
  t.equal(status.bytesIn, 3 * 8)
  await app.audit.flush()
  const rows = await app.db.selectFrom('audit_log').select(['bytes_out']).where('event_type', '=', 'request').execute()
  t.equal(status.bytesOut, rows.reduce((sum, row) => sum + Number(row.bytes_out ?? 0), 0), 'bytesOut is the sum of the rows\' bytesOut')
  t.ok(status.activeConnections >= 1, 'this connection at least')
  // Rows wait up to the 50 ms flush interval: the depth is exact once they are written.
  t.ok(Number.isInteger(status.audit.queueDepth) && status.audit.queueDepth >= 0)
  t.same((await httpRequest(`${url}/admin/status`, { headers: adminHeaders })).json().audit, { queueDepth: 0, dropped: 0 })
  t.match(status.targets, [
    { routeId: api.id, url: upstream.url, healthy: true, inFlight: 0 },
    { routeId: api.id, url: second.url, healthy: true, inFlight: 0 },
    { routeId: limited.id, url: upstream.url, healthy: true, inFlight: 0 },
    { routeId: dead.id, url: `http://127.0.0.1:${deadPort}`, inFlight: 0 }
  ])
  t.equal(status.targets.length, 4)
})

t.test('activeConnections follows open client connections', async (t) => {
  const { url, port } = await startGateway(t)
  const read = async (): Promise<number> => (await httpRequest(`${url}/admin/status`, { headers: { ...adminHeaders, connection: 'close' } })).json().activeConnections
  const baseline = await read()
  const sockets: Socket[] = []
  for (let i = 0; i < 3; i++) {
    sockets.push(await new Promise<Socket>((resolve) => { const s = connect(port, '127.0.0.1', () => resolve(s)) }))
  }
  await sleep(50)
  t.equal(await read(), baseline + 3)
  for (const socket of sockets) socket.destroy()
  await sleep(100)
  t.equal(await read(), baseline)
})

t.test('targets show in-flight requests while an upstream holds them', async (t) => {
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  const upstream = await startUpstream(t, (_req, res) => { void held.then(() => res.end('ok')) })
  const { app, url } = await startGateway(t)
  const route = await createRoute(app, { name: 'hold', path: '/hold', targets: [{ url: upstream.url, weight: 1 }] })
  const pending = [httpRequest(`${url}/hold/1`), httpRequest(`${url}/hold/2`)]
  while (upstream.requests.length < 2) await sleep(10)
  const during = (await httpRequest(`${url}/admin/status`, { headers: adminHeaders })).json()
  t.match(during.targets, [{ routeId: route.id, url: upstream.url, inFlight: 2, healthy: true }])
  release()
  await Promise.all(pending)
  await sleep(20)
  const after = (await httpRequest(`${url}/admin/status`, { headers: adminHeaders })).json()
  t.match(after.targets, [{ inFlight: 0 }])
})

t.test('needs the admin token', async (t) => {
  const { url } = await startGateway(t)
  const response = await httpRequest(`${url}/admin/status`)
  t.equal(response.statusCode, 401)
  t.equal(response.headers['www-authenticate'], 'Bearer realm="gatehouse-admin"')
})
