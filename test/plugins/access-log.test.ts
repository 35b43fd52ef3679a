import { Writable } from 'node:stream'
import t from 'tap'
import { adminHeaders, createRoute, httpRequest, rawHttp, rawStatus, spawnGateway, startGateway, startUpstream, type TestContext } from '../helper.js'

interface LogLine { level: number, msg: string, reqId?: string, route?: string | null, method?: string, path?: string, status?: number, durationMs?: number, outcome?: string }

/** A gateway whose pino output (level `level`) is collected as parsed lines. */
async function loggedGateway (t: TestContext, level: string) {
  const lines: LogLine[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString('utf8').split('\n')) if (text !== '') lines.push(JSON.parse(text))
      callback()
    }
  })
  const gateway = await startGateway(t, { build: { logger: { level, stream } } })
  return { ...gateway, lines }
}

t.test('one info line per request with request id, route, status and duration; none of Fastify\'s own', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url, port, lines } = await loggedGateway(t, 'info')
  await createRoute(app, { name: 'users', path: '/users', targets: [{ url: upstream.url, weight: 1 }] })
  lines.length = 0

  t.equal((await httpRequest(`${url}/users/7?token=secret`, { headers: { 'x-request-id': 'log-1' } })).statusCode, 200)
  t.equal((await httpRequest(`${url}/nowhere`, { headers: { 'x-request-id': 'log-2' } })).statusCode, 404)
  t.equal((await httpRequest(`${url}/admin/status`, { headers: { ...adminHeaders, 'x-request-id': 'log-3' } })).statusCode, 200)
  t.equal(rawStatus(await rawHttp(port, 'BROKEN\r\n\r\n')), 400)

  const completed = lines.filter((line) => line.msg === 'request completed')
  t.equal(completed.length, 4, 'exactly one line per request')
  t.equal(lines.filter((line) => line.msg === 'incoming request').length, 0, 'Fastify\'s request lines are off')
  t.match(completed[0], { level: 30, reqId: 'log-1', route: 'users', method: 'GET', path: '/users/7', status: 200, outcome: 'proxied' })
  t.match(completed[1], { level: 30, reqId: 'log-2', route: null, path: '/nowhere', status: 404, outcome: 'no_route' })
  t.match(completed[2], { level: 30, reqId: 'log-3', route: null, method: 'GET', path: '/admin/status', status: 200 })
  t.match(completed[3], { level: 30, route: null, status: 400, outcome: 'blocked' })
  for (const line of completed.slice(0, 3)) t.ok(typeof line.durationMs === 'number' && line.durationMs >= 0, `durationMs ${line.durationMs}`)
  t.notOk(JSON.stringify(lines).includes('token=secret'), 'query strings (which may hold credentials) are not logged')
})

t.test('above info, no access lines are written', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url, lines } = await loggedGateway(t, 'warn')
  await createRoute(app, { name: 'users', path: '/users', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 3; i++) await httpRequest(`${url}/users`)
  t.same(lines.filter((line) => line.msg === 'request completed'), [])
})

t.test('LOG_LEVEL is respected by the real process', async (t) => {
  const upstream = await startUpstream(t)
  for (const [level, expected] of [['info', 1], ['warn', 0]] as const) {
    const gateway = await spawnGateway(t, { LOG_LEVEL: level })
    const created = await httpRequest(`${gateway.url}/admin/routes`, {
      method: 'POST',
      headers: { ...adminHeaders, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'echo', path: '/echo', targets: [{ url: upstream.url, weight: 1 }] })
    })
    t.equal(created.statusCode, 201, created.body)
    t.equal((await httpRequest(`${gateway.url}/echo/x`, { headers: { 'x-request-id': `level-${level}` } })).statusCode, 200)
    t.equal(await gateway.stop(), 0)
    const matching = gateway.stdout.filter((line) => line.includes('"reqId":"level-') && line.includes('request completed'))
    t.equal(matching.length, expected, `LOG_LEVEL=${level}`)
    if (expected === 1) t.match(JSON.parse(matching[0]), { level: 30, reqId: `level-${level}`, route: 'echo', status: 200, path: '/echo/x' })
  }
})
