import { existsSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { spawnGateway, startUpstream, tempDir } from '../helper.js'
import { call, waitFor } from './load.js'
import { startPrivatePostgres } from './private-postgres.js'

// docs/faults.md "Starting without the database": a process or worker that starts while the database is unreachable
// starts anyway with the last configuration it saw, reports /ready 503 and recovers by itself.
// Before: "start-up failed: connect ECONNREFUSED" (exit 1), and with WORKERS=2 the primary
// exited 1 before forking.

t.test('started while PostgreSQL is down: serves the saved configuration, ready once it returns', async (t) => {
  const postgres = await startPrivatePostgres(t)
  if (typeof postgres === 'string') return void t.skip(`private PostgreSQL unavailable: ${postgres}`, () => {})
  await postgres.query('create database gatehouse')
  const upstream = await startUpstream(t)
  const cwd = tempDir(t)
  const env = { DATABASE_URL: postgres.url('gatehouse') }
  const first = await spawnGateway(t, env, { cwd })
  t.ok(await waitFor(async () => (await call(first.url, 'GET', '/ready')).status === 200, 15_000), 'first start: ready')
  t.equal((await call(first.url, 'POST', '/admin/routes', { name: 'svc', path: '/svc', targets: [{ url: upstream.url }] })).status, 201)
  const snapshot = path.join(cwd, 'data', `last-config-127.0.0.1-${postgres.port}-gatehouse.json`)
  t.ok(await waitFor(() => existsSync(snapshot) && readFileSync(snapshot, 'utf8').includes('"/svc"'), 5000), `configuration saved in ${path.relative(cwd, snapshot)}`)
  t.equal(statSync(snapshot).mode & 0o777, 0o600, 'readable by its owner only (it holds what the database holds)')
  t.equal(await first.stop(), 0)

  await postgres.stop()
  const second = await spawnGateway(t, { ...env, PORT: String(first.port) }, { cwd })
  t.ok(await second.waitForLine(/serving the last configuration saved/), 'says it runs on the saved configuration')
  const proxied = await call(second.url, 'GET', '/svc/hello')
  t.equal(proxied.status, 200, 'the saved route is served')
  t.equal(proxied.body.url, '/svc/hello', 'by the upstream')
  const ready = await call(second.url, 'GET', '/ready')
  t.equal(ready.status, 503, '/ready 503 while the database is down')
  t.match(ready.body.message, /^database un/, ready.body.message)
  const admin = await call(second.url, 'GET', '/admin/routes')
  t.equal(admin.status, 503, 'admin 503')
  t.match(admin.body.message, /^database un/)

  await postgres.start()
  t.ok(await waitFor(async () => (await call(second.url, 'GET', '/ready')).status === 200, 10_000), 'ready once PostgreSQL is back, without a restart')
  const routes = await call(second.url, 'GET', '/admin/routes')
  t.equal(routes.status, 200)
  t.same(routes.body.items.map((route: { name: string }) => route.name), ['svc'])
  t.equal(await second.stop(), 0)
})

t.test('WORKERS=2 on a fresh database while PostgreSQL is down: workers serve, the primary migrates once it returns', async (t) => {
  const postgres = await startPrivatePostgres(t)
  if (typeof postgres === 'string') return void t.skip(`private PostgreSQL unavailable: ${postgres}`, () => {})
  await postgres.query('create database gatehouse')
  await postgres.stop()
  const upstream = await startUpstream(t)
  const gateway = await spawnGateway(t, { DATABASE_URL: postgres.url('gatehouse'), WORKERS: '2' }, { cwd: tempDir(t) })
  // Long enough for the old policy (give up after 3 workers failed to start) to have acted.
  await sleep(3000)
  t.equal(gateway.process.exitCode, null, 'the primary is still running')
  const ready = await call(gateway.url, 'GET', '/ready')
  t.equal(ready.status, 503, '/ready 503: nothing loaded yet')
  t.equal((await call(gateway.url, 'GET', '/svc/x')).status, 404, 'no configuration saved: no routes')
  t.notOk(gateway.stdout.concat(gateway.stderr).some((line) => /giving up|worker died/.test(line)), 'no worker died')

  await postgres.start()
  t.ok(await waitFor(async () => {
    const answers = await Promise.all([1, 2, 3, 4].map(async () => (await call(gateway.url, 'GET', '/ready')).status))
    return answers.every((status) => status === 200)
  }, 20_000), 'every worker ready once the primary has migrated')
  t.equal((await call(gateway.url, 'POST', '/admin/routes', { name: 'svc', path: '/svc', targets: [{ url: upstream.url }] })).status, 201, 'admin writes work')
  t.ok(await waitFor(async () => {
    const answers = await Promise.all([1, 2, 3, 4].map(async () => (await call(gateway.url, 'GET', '/svc/x')).status))
    return answers.every((status) => status === 200)
  }, 5000), 'the new route served by every worker')
  t.equal(await gateway.stop(), 0)
})
