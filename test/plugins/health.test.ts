import t from 'tap'
import { Client } from 'undici'
import { buildTestApp, createRoute, httpRequest, startGateway, startUpstream } from '../helper.js'

t.test('/health and /ready answer without a token and are never proxied', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'everything', path: '/', targets: [{ url: upstream.url, weight: 1 }] })
  const health = await httpRequest(`${url}/health`)
  t.equal(health.statusCode, 200)
  t.equal(health.headers['content-type'], 'application/json; charset=utf-8')
  t.same(health.json(), { status: 'ok' })
  const ready = await httpRequest(`${url}/ready`)
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ready' })
  t.equal(upstream.requests.length, 0, 'the catch-all route never saw them')
})

t.test('/ready answers 503 as soon as the instance drains, also on a kept-alive connection; /health stays 200', async (t) => {
  const { app, url } = await startGateway(t)
  const client = new Client(url, { pipelining: 1 })
  t.teardown(() => client.close())
  let connections = 0
  client.on('connect', () => { connections++ })
  const get = async (path: string) => {
    const response = await client.request({ method: 'GET', path })
    return { statusCode: response.statusCode, headers: response.headers, body: await response.body.json() as Record<string, unknown> }
  }
  t.equal((await get('/ready')).statusCode, 200)
  t.equal(app.readiness.draining, false)

  app.readiness.drain()
  t.equal(app.readiness.draining, true)
  const draining = await get('/ready')
  t.equal(draining.statusCode, 503)
  t.equal(draining.headers.connection, 'close', 'the load balancer is told to reconnect elsewhere')
  t.same(Object.keys(draining.body).sort(), ['error', 'message', 'requestId', 'statusCode'])
  t.equal(draining.body.statusCode, 503)
  t.equal(draining.body.message, 'draining: shutting down')
  t.equal(connections, 1, 'the 503 came on the connection kept alive from before')

  const health = await httpRequest(`${url}/health`)
  t.equal(health.statusCode, 200, 'liveness is unaffected by draining')
})

t.test('/ready answers 503 when the database does not answer', async (t) => {
  const app = await buildTestApp(t)
  t.equal((await app.inject({ url: '/ready' })).statusCode, 200)
  await app.db.destroy()
  const response = await app.inject({ url: '/ready' })
  t.equal(response.statusCode, 503)
  t.equal(response.json().message, 'database unavailable')
  t.match(response.json().requestId, /^[0-9a-f-]{36}$/)
  t.equal((await app.inject({ url: '/health' })).statusCode, 200, 'the process itself is alive')
})
