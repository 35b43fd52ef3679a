import t from 'tap'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { stringify as toYaml } from 'yaml'
import { adminHeaders, httpRequest, spawnGateway, startUpstream, tempDir } from './helper.js'

async function until (check: () => Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return false
}

t.test('CONFIG_FILE: applied at start, on SIGHUP and on POST /admin/reload; an invalid file later is refused and the running configuration stays', async (t) => {
  const upstream = await startUpstream(t)
  const dir = tempDir(t)
  const file = path.join(dir, 'gatehouse.yaml')
  const write = (routes: unknown[], extra: Record<string, unknown> = {}): void => writeFileSync(file, toYaml({ routes, ...extra }))
  write([{ name: 'users', path: '/users', targets: [{ url: upstream.url }] }], { consumers: [{ name: 'alice' }] })

  const gateway = await spawnGateway(t, { CONFIG_FILE: file, LOG_LEVEL: 'info' })
  const status = async (route: string) => (await httpRequest(`${gateway.url}${route}`)).statusCode
  const admin = async (method: string, route: string) => await httpRequest(`${gateway.url}${route}`, { method: method as 'GET', headers: adminHeaders })
  t.equal(await status('/users'), 200, 'the file\'s route serves from the start')
  const first = (await admin('GET', '/admin/config/revisions')).json()
  t.equal(first.total, 1)
  t.match(first.items[0], { revision: 1, source: 'config-file', actor: 'system', summary: { created: 2, updated: 0, deleted: 0 } })

  write([{ name: 'users', path: '/users', targets: [{ url: upstream.url }] }, { name: 'orders', path: '/orders', targets: [{ url: upstream.url }] }], { consumers: [{ name: 'alice' }] })
  gateway.process.kill('SIGHUP')
  t.ok(await until(async () => await status('/orders') === 200), 'SIGHUP applies the file again')
  t.equal((await admin('GET', '/admin/config/revisions')).json().items[0].source, 'config-file')

  writeFileSync(file, toYaml({ routes: [{ name: 'users', path: 'no-slash', targets: [{ url: upstream.url }] }] }))
  gateway.process.kill('SIGHUP')
  const refusal = await gateway.waitForLine(/CONFIG_FILE refused/)
  t.match(refusal, /routes\/0\/path/, 'the log names the field')
  t.equal(await status('/users'), 200, 'the running configuration stays')
  t.equal(await status('/orders'), 200)
  const reloadRefused = await admin('POST', '/admin/reload')
  t.equal(reloadRefused.statusCode, 400, 'POST /admin/reload refuses the invalid file')
  t.match(reloadRefused.json().message, /^CONFIG_FILE .*gatehouse\.yaml: \/routes\/0\/path /)
  t.equal((await admin('GET', '/admin/config/revisions')).json().total, 2, 'no revision for a refused file')

  write([{ name: 'orders', path: '/orders', targets: [{ url: upstream.url }] }])
  const reloaded = await admin('POST', '/admin/reload')
  t.equal(reloaded.statusCode, 200)
  t.equal(reloaded.json().configRevision, 3)
  t.equal(reloaded.json().routes, 1)
  t.equal(await status('/users'), 404, 'what the file omits is deleted')
  t.equal(await status('/orders'), 200)

  t.equal(await gateway.stop(), 0)
})

t.test('CONFIG_FILE invalid at start: start-up stops naming the problem and the field', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'gatehouse.yaml')
  writeFileSync(file, toYaml({ routes: [{ name: 'users', path: '/users', targets: [{ url: 'ftp://example.com' }] }] }))
  const gateway = await spawnGateway(t, { CONFIG_FILE: file }, { waitForHealth: false })
  t.equal(await gateway.exited, 1)
  t.match(gateway.stderr.join('\n'), /gatehouse: start-up failed: CONFIG_FILE .*gatehouse\.yaml: .*routes\/0\/targets\/0\/url/)

  const missing = await spawnGateway(t, { CONFIG_FILE: path.join(dir, 'absent.json') }, { waitForHealth: false })
  t.equal(await missing.exited, 1)
  t.match(missing.stderr.join('\n'), /start-up failed: CONFIG_FILE .*absent\.json cannot be read/)
})

t.test('CONFIG_FILE with WORKERS=2: applied once, by the primary', async (t) => {
  const upstream = await startUpstream(t)
  const dir = tempDir(t)
  const file = path.join(dir, 'gatehouse.json')
  writeFileSync(file, JSON.stringify({ routes: [{ name: 'users', path: '/users', targets: [{ url: upstream.url }] }] }))
  const gateway = await spawnGateway(t, { CONFIG_FILE: file, WORKERS: '2' }, { startTimeoutMs: 60_000 })
  t.equal((await httpRequest(`${gateway.url}/users`)).statusCode, 200)
  const revisions = (await httpRequest(`${gateway.url}/admin/config/revisions`, { headers: adminHeaders })).json()
  t.equal(revisions.total, 1, 'one revision for the host, not one per worker')
  t.equal(revisions.items[0].source, 'config-file')

  writeFileSync(file, JSON.stringify({ routes: [{ name: 'orders', path: '/orders', targets: [{ url: upstream.url }] }] }))
  gateway.process.kill('SIGHUP')
  t.ok(await until(async () => (await httpRequest(`${gateway.url}/orders`)).statusCode === 200 && (await httpRequest(`${gateway.url}/orders`)).statusCode === 200), 'SIGHUP to the primary: every worker follows')
  t.equal((await httpRequest(`${gateway.url}/admin/config/revisions`, { headers: adminHeaders })).json().total, 2)
  t.equal(await gateway.stop(), 0)
})
