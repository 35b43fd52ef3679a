import t from 'tap'
import { Client } from 'undici'
import { adminHeaders, httpRequest, spawnGateway, startUpstream, type SpawnedGateway, type TestContext } from './helper.js'

/** Creates a route in the running process through the admin API over HTTP. */
async function addRoute (gateway: SpawnedGateway, name: string, path: string, target: string): Promise<void> {
  const response = await httpRequest(`${gateway.url}/admin/routes`, {
    method: 'POST',
    headers: { ...adminHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ name, path, targets: [{ url: target, weight: 1 }] })
  })
  if (response.statusCode !== 201) throw new Error(`creating route ${name}: ${response.statusCode} ${response.body}`)
}

/** An upstream that answers /slow after `delayMs` and tells when a request arrived. */
async function slowUpstream (t: TestContext, delayMs: number): Promise<{ url: string, arrived: Promise<void> }> {
  let arrived!: () => void
  const arrivedPromise = new Promise<void>((resolve) => { arrived = resolve })
  const upstream = await startUpstream(t, (req, res) => {
    arrived()
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`done ${req.url}`)
    }, delayMs)
  })
  return { url: upstream.url, arrived: arrivedPromise }
}

async function refusesConnections (port: number): Promise<boolean> {
  try {
    await httpRequest(`http://127.0.0.1:${port}/health`, { headersTimeout: 1000 })
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED'
  }
}

t.test('SIGTERM lets an in-flight request finish, closes the listener and exits 0', async (t) => {
  const upstream = await slowUpstream(t, 1000)
  const gateway = await spawnGateway(t, { SHUTDOWN_GRACE_MS: '10000' })
  await addRoute(gateway, 'slow', '/slow', upstream.url)

  const inFlight = httpRequest(`${gateway.url}/slow/1`)
  await upstream.arrived
  const signalledAt = Date.now()
  gateway.process.kill('SIGTERM')
  const response = await inFlight
  t.equal(response.statusCode, 200)
  t.equal(response.body, 'done /slow/1')
  t.equal(await gateway.exited, 0)
  // Exits once the request is done, without waiting for the grace period or keep-alive timeout.
  t.ok(Date.now() - signalledAt < 5000, `exited ${Date.now() - signalledAt} ms after SIGTERM`)
  t.equal(await refusesConnections(gateway.port), true)
})

t.test('during SHUTDOWN_DELAY_MS /ready answers 503 on a kept-alive connection while traffic is still served', async (t) => {
  const upstream = await startUpstream(t)
  const gateway = await spawnGateway(t, { SHUTDOWN_DELAY_MS: '3000', LOG_LEVEL: 'info' })
  await addRoute(gateway, 'api', '/api', upstream.url)
  const client = new Client(gateway.url, { pipelining: 1, keepAliveTimeout: 60_000 })
  t.teardown(() => client.destroy())
  let connections = 0
  client.on('connect', () => { connections++ })

  const before = await client.request({ method: 'GET', path: '/ready' })
  t.equal(before.statusCode, 200)
  t.same(await before.body.json(), { status: 'ready' })

  const signalledAt = Date.now()
  gateway.process.kill('SIGTERM')
  await gateway.waitForLine(/shutting down: \/ready answers 503/)
  const during = await client.request({ method: 'GET', path: '/ready' })
  t.equal(during.statusCode, 503)
  const body = await during.body.json() as Record<string, unknown>
  t.same(Object.keys(body).sort(), ['error', 'message', 'requestId', 'statusCode'])
  t.equal(body.statusCode, 503)
  t.equal(body.error, 'Service Unavailable')

  // Still serving proxied traffic, also on new connections, until the delay is over.
  const proxied = await httpRequest(`${gateway.url}/api/x`)
  t.equal(proxied.statusCode, 200)
  t.equal(proxied.json().url, '/api/x')
  t.ok(Date.now() - signalledAt < 3000, 'answered within the delay')
  t.equal(await gateway.exited, 0)
  t.ok(Date.now() - signalledAt >= 2900, `kept serving for the delay (exited after ${Date.now() - signalledAt} ms)`)
  t.equal(connections, 1, '/ready was asked twice on one kept-alive connection')
})

t.test('after SHUTDOWN_GRACE_MS requests still in flight are cut and the process exits 0', async (t) => {
  const upstream = await slowUpstream(t, 30_000)
  const gateway = await spawnGateway(t, { SHUTDOWN_GRACE_MS: '500' })
  await addRoute(gateway, 'stuck', '/stuck', upstream.url)

  const inFlight = httpRequest(`${gateway.url}/stuck`).then(() => 'answered', (err: Error) => err.message)
  await upstream.arrived
  const signalledAt = Date.now()
  gateway.process.kill('SIGTERM')
  t.equal(await inFlight, 'other side closed')
  t.equal(await gateway.exited, 0)
  const took = Date.now() - signalledAt
  t.ok(took >= 400 && took < 4000, `cut after the grace period (${took} ms)`)
  t.match(gateway.stdout.join('\n'), /shutdown grace period over/)
})

t.test('a second signal during shutdown does not cut the drain short', async (t) => {
  const upstream = await slowUpstream(t, 1500)
  const gateway = await spawnGateway(t, { SHUTDOWN_GRACE_MS: '10000' })
  await addRoute(gateway, 'slow', '/slow', upstream.url)

  const inFlight = httpRequest(`${gateway.url}/slow/2`)
  await upstream.arrived
  gateway.process.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 200))
  gateway.process.kill('SIGINT')
  gateway.process.kill('SIGTERM')
  const response = await inFlight
  t.equal(response.statusCode, 200)
  t.equal(response.body, 'done /slow/2')
  t.equal(await gateway.exited, 0)
})

t.test('SIGINT drains like SIGTERM', async (t) => {
  const gateway = await spawnGateway(t)
  t.equal(await gateway.stop('SIGINT'), 0)
  t.equal(await refusesConnections(gateway.port), true)
})

t.test('idle kept-alive connections do not hold up the exit', async (t) => {
  const gateway = await spawnGateway(t, { KEEP_ALIVE_TIMEOUT_MS: '60000', SHUTDOWN_GRACE_MS: '20000' })
  const client = new Client(gateway.url, { keepAliveTimeout: 60_000 })
  t.teardown(() => client.destroy())
  const response = await client.request({ method: 'GET', path: '/health' })
  await response.body.text()
  const signalledAt = Date.now()
  t.equal(await gateway.stop(), 0)
  t.ok(Date.now() - signalledAt < 3000, `exited in ${Date.now() - signalledAt} ms`)
})
