import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { adminHeaders, createRoute, httpRequest, startGateway, startUpstream, type TestContext } from '../helper.js'

/** A gateway trusting the loopback proxy, so X-Forwarded-For sets the client IP of each test request. */
async function setup (t: TestContext): Promise<{ app: FastifyInstance, url: string, upstreamHits: () => number }> {
  const upstream = await startUpstream(t)
  const gateway = await startGateway(t, { env: { TRUST_PROXY: '127.0.0.1' } })
  await createRoute(gateway.app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }] })
  await createRoute(gateway.app, { name: 'internal', path: '/internal', targets: [{ url: upstream.url, weight: 1 }] })
  return { app: gateway.app, url: gateway.url, upstreamHits: () => upstream.requests.length }
}

async function addFilter (app: FastifyInstance, payload: Record<string, unknown>): Promise<{ id: string, [key: string]: unknown }> {
  const response = await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload })
  if (response.statusCode !== 201) throw new Error(`creating filter failed: ${response.statusCode} ${response.body}`)
  return response.json()
}

const from = (ip: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': ip } })

t.test('denies a single IP with 403 JSON before the upstream sees anything; others pass', async (t) => {
  const { app, url, upstreamHits } = await setup(t)
  const filter = await addFilter(app, { action: 'deny', ip: '203.0.113.7', reason: 'abuse' })
  t.match(filter, { action: 'deny', ip: '203.0.113.7', path: null, expiresAt: null, reason: 'abuse' })
  const denied = await httpRequest(`${url}/api/x`, from('203.0.113.7'))
  t.equal(denied.statusCode, 403)
  t.same(Object.keys(denied.json()).sort(), ['error', 'message', 'requestId', 'statusCode'])
  t.equal(denied.json().message, 'denied by an IP filter')
  t.equal(upstreamHits(), 0)
  t.equal((await httpRequest(`${url}/api/x`, from('203.0.113.8'))).statusCode, 200)
  t.equal(upstreamHits(), 1)
})

t.test('denies IPv4 and IPv6 CIDR blocks, and IPv4-mapped IPv6 clients as IPv4', async (t) => {
  const { app, url } = await setup(t)
  await addFilter(app, { action: 'deny', ip: '198.51.100.0/24' })
  await addFilter(app, { action: 'deny', ip: '2001:db8:bad::/48' })
  t.equal((await httpRequest(`${url}/api/x`, from('198.51.100.200'))).statusCode, 403)
  t.equal((await httpRequest(`${url}/api/x`, from('::ffff:198.51.100.9'))).statusCode, 403)
  t.equal((await httpRequest(`${url}/api/x`, from('198.51.101.1'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/api/x`, from('2001:db8:bad:ffff::1'))).statusCode, 403)
  t.equal((await httpRequest(`${url}/api/x`, from('2001:db8:bae::1'))).statusCode, 200)
})

t.test('denies a path prefix on segment boundaries, after normalisation', async (t) => {
  const { app, url } = await setup(t)
  await addFilter(app, { action: 'deny', path: '/api/private' })
  t.equal((await httpRequest(`${url}/api/private`)).statusCode, 403)
  t.equal((await httpRequest(`${url}/api/private/x`)).statusCode, 403)
  t.equal((await httpRequest(`${url}/api/public/../private/x`)).statusCode, 403)
  t.equal((await httpRequest(`${url}/api//private`)).statusCode, 403)
  t.equal((await httpRequest(`${url}/api/%70rivate`)).statusCode, 403)
  t.equal((await httpRequest(`${url}/api/privateer`)).statusCode, 200)
  t.equal((await httpRequest(`${url}/api/public`)).statusCode, 200)
})

t.test('an ip+path rule denies only that IP on that prefix', async (t) => {
  const { app, url } = await setup(t)
  await addFilter(app, { action: 'deny', ip: '192.0.2.0/28', path: '/api/orders' })
  t.equal((await httpRequest(`${url}/api/orders/1`, from('192.0.2.5'))).statusCode, 403)
  t.equal((await httpRequest(`${url}/api/users`, from('192.0.2.5'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/api/orders/1`, from('192.0.2.16'))).statusCode, 200)
})

t.test('allow rules: only listed IPs reach the prefix; other prefixes stay open; deny beats allow', async (t) => {
  const { app, url } = await setup(t)
  await addFilter(app, { action: 'allow', ip: '10.0.0.0/8', path: '/internal' })
  await addFilter(app, { action: 'allow', ip: '2001:db8::/32', path: '/internal' })
  await addFilter(app, { action: 'deny', ip: '10.6.6.6' })
  t.equal((await httpRequest(`${url}/internal/x`, from('10.1.2.3'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/internal/x`, from('2001:db8::5'))).statusCode, 200)
  const refused = await httpRequest(`${url}/internal/x`, from('172.16.0.1'))
  t.equal(refused.statusCode, 403)
  t.equal(refused.json().message, 'not on the allow list for this path')
  t.equal((await httpRequest(`${url}/api/x`, from('172.16.0.1'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/internal/x`, from('10.6.6.6'))).statusCode, 403)
})

t.test('a rule stops applying at expiresAt without a restart', async (t) => {
  const { app, url } = await setup(t)
  await addFilter(app, { action: 'deny', ip: '203.0.113.50', expiresAt: new Date(Date.now() + 600).toISOString() })
  t.equal((await httpRequest(`${url}/api/x`, from('203.0.113.50'))).statusCode, 403)
  await sleep(700)
  t.equal((await httpRequest(`${url}/api/x`, from('203.0.113.50'))).statusCode, 200)
})

t.test('deleting a rule takes effect on the next request', async (t) => {
  const { app, url } = await setup(t)
  const filter = await addFilter(app, { action: 'deny', path: '/api' })
  t.equal((await httpRequest(`${url}/api/x`)).statusCode, 403)
  const deleted = await httpRequest(`${url}/admin/filters/${filter.id}`, { method: 'DELETE', headers: adminHeaders })
  t.equal(deleted.statusCode, 204)
  t.equal((await httpRequest(`${url}/api/x`)).statusCode, 200)
  t.equal((await httpRequest(`${url}/admin/filters/${filter.id}`, { method: 'DELETE', headers: adminHeaders })).statusCode, 404)
})

t.test('reserved endpoints keep working for a denied IP', async (t) => {
  const { app, url } = await setup(t)
  await addFilter(app, { action: 'deny', ip: '0.0.0.0/0' })
  await addFilter(app, { action: 'deny', ip: '::/0' })
  await addFilter(app, { action: 'deny', path: '/' })
  t.equal((await httpRequest(`${url}/api/x`)).statusCode, 403)
  t.equal((await httpRequest(`${url}/health`)).statusCode, 200)
  t.equal((await httpRequest(`${url}/ready`)).statusCode, 200)
  t.equal((await httpRequest(`${url}/docs/json`)).statusCode, 200)
  const list = await httpRequest(`${url}/admin/filters`, { headers: adminHeaders })
  t.equal(list.statusCode, 200)
  t.equal(list.json().total, 3)
})

t.test('stores rules in canonical form, lists with pagination, gets by id, requires the admin token', async (t) => {
  const { app } = await setup(t)
  const a = await addFilter(app, { action: 'deny', ip: '10.1.2.3/8', path: '/api/', reason: 'r' })
  t.equal(a.ip, '10.0.0.0/8', 'stored in canonical form')
  t.equal(a.path, '/api')
  await addFilter(app, { action: 'allow', path: '/x' })
  const list = await app.inject({ method: 'GET', url: '/admin/filters?limit=1', headers: adminHeaders })
  t.equal(list.json().total, 2)
  t.equal(list.json().items.length, 1)
  t.equal(list.json().items[0].id, a.id)
  const one = await app.inject({ method: 'GET', url: `/admin/filters/${a.id}`, headers: adminHeaders })
  t.same(one.json(), a)
  const unauthorized = await app.inject({ method: 'POST', url: '/admin/filters', payload: { action: 'deny', ip: '10.0.0.1' } })
  t.equal(unauthorized.statusCode, 401)
})

t.test('invalid filter input → 400 naming the field', async (t) => {
  const { app } = await setup(t)
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ action: 'deny', ip: '10.0.0.0/33' }, /body\/ip/],
    [{ action: 'deny', ip: '300.1.1.1' }, /body\/ip/],
    [{ action: 'deny', ip: 'example.com' }, /body\/ip/],
    [{ action: 'deny', ip: 'fe80::1%eth0' }, /body\/ip/],
    [{ action: 'deny' }, /ip or path/],
    [{ action: 'deny', ip: null, path: null }, /ip or path/],
    [{ action: 'block', ip: '10.0.0.1' }, /action/],
    [{ ip: '10.0.0.1' }, /action/],
    [{ action: 'deny', path: 'api' }, /path/],
    [{ action: 'deny', path: '/a/../b' }, /body\/path/],
    [{ action: 'deny', ip: '10.0.0.1', expiresAt: 'tomorrow' }, /expiresAt/],
    [{ action: 'deny', ip: '10.0.0.1', extra: 1 }, /extra|additional/],
    [{ action: 'deny', ip: 7 }, /ip/]
  ]
  for (const [payload, message] of cases) {
    const response = await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload })
    t.equal(response.statusCode, 400, JSON.stringify(payload))
    t.match(response.json().message, message, JSON.stringify(payload))
  }
  const list = await app.inject({ method: 'GET', url: '/admin/filters', headers: adminHeaders })
  t.equal(list.json().total, 0)
})

t.test('a filter change on one instance applies on another sharing the database within 1 s', async (t) => {
  const upstream = await startUpstream(t)
  const first = await startGateway(t)
  await createRoute(first.app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }] })
  const databaseUrl = first.app.config.databaseUrl
  const second = await startGateway(t, { databaseUrl, build: { migrate: false, configPollIntervalMs: 250 } })
  await sleep(300)
  t.equal((await httpRequest(`${second.url}/api/x`)).statusCode, 200)
  await addFilter(first.app, { action: 'deny', ip: '127.0.0.1' })
  const started = Date.now()
  let status = 200
  while (Date.now() - started < 1000 && status !== 403) {
    status = (await httpRequest(`${second.url}/api/x`)).statusCode
    if (status !== 403) await sleep(25)
  }
  t.equal(status, 403, `seen by the second instance after ${Date.now() - started} ms`)
})

t.test('/admin/config exports filters and imports them all-or-nothing', async (t) => {
  const { app, url } = await setup(t)
  await addFilter(app, { action: 'deny', ip: '203.0.113.7', reason: 'old' })
  const exported = await app.inject({ method: 'GET', url: '/admin/config', headers: adminHeaders })
  t.equal(exported.statusCode, 200)
  const document = exported.json()
  t.equal(document.filters.length, 1)
  t.match(document.filters[0], { action: 'deny', ip: '203.0.113.7', reason: 'old' })

  const bad = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: { ...document, filters: [{ action: 'deny', ip: '10.0.0.0/99' }] } })
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /filters\/0\/ip/)
  t.equal((await httpRequest(`${url}/api/x`, from('203.0.113.7'))).statusCode, 403, 'a refused import changes nothing')

  const replaced = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: { ...document, filters: [{ action: 'deny', path: '/internal' }] } })
  t.equal(replaced.statusCode, 200, replaced.body)
  t.equal((await httpRequest(`${url}/api/x`, from('203.0.113.7'))).statusCode, 200)
  t.equal((await httpRequest(`${url}/internal/x`)).statusCode, 403)
})
