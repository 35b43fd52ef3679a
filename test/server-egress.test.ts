import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import t from 'tap'
import { adminHeaders, freePort, httpRequest, spawnGateway, type SpawnedGateway, type TestContext } from './helper.js'

/** The forward proxy as a real process (docs/egress.md): start-up settings, SIGTERM with open tunnels, WORKERS. */

async function allowLoopback (gateway: SpawnedGateway, ports: number[]): Promise<void> {
  const response = await httpRequest(`${gateway.url}/admin/egress-rules`, {
    method: 'POST',
    headers: { ...adminHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ action: 'allow', cidr: '127.0.0.0/8', ports })
  })
  if (response.statusCode !== 201) throw new Error(`creating the rule: ${response.statusCode} ${response.body}`)
}

async function startEcho (t: TestContext): Promise<number> {
  const server = createServer((socket) => {
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => { server.close(() => resolve()) }))
  return (server.address() as { port: number }).port
}

async function openTunnel (port: number, target: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`)
  const [head] = await once(socket, 'data') as [Buffer]
  if (!head.toString('latin1').startsWith('HTTP/1.1 200')) throw new Error(`tunnel refused: ${head.toString('latin1')}`)
  return socket
}

async function roundTrip (socket: Socket, text: string): Promise<string> {
  socket.write(text)
  const [data] = await once(socket, 'data') as [Buffer]
  return data.toString()
}

t.test('an invalid EGRESS_CACHE stops start-up with a message naming it', async (t) => {
  const gateway = await spawnGateway(t, { EGRESS_PORT: String(await freePort()), EGRESS_CACHE: 'yes' }, { waitForHealth: false })
  t.equal(await gateway.exited, 1)
  t.match(gateway.stderr.join('\n'), /invalid setting EGRESS_CACHE: must be true or false, got "yes"/)
})

t.test('an invalid EGRESS_AUTH stops start-up with a message naming it', async (t) => {
  const gateway = await spawnGateway(t, { EGRESS_PORT: String(await freePort()), EGRESS_AUTH: 'digest' }, { waitForHealth: false })
  t.equal(await gateway.exited, 1)
  t.match(gateway.stderr.join('\n'), /invalid setting EGRESS_AUTH: must be basic or none/)
})

t.test('SIGTERM with open tunnels: no new connections, tunnels work until the grace deadline, then closed; exit 0', async (t) => {
  const egressPort = await freePort()
  const gateway = await spawnGateway(t, { EGRESS_PORT: String(egressPort), EGRESS_AUTH: 'none', SHUTDOWN_GRACE_MS: '1500' })
  const echoPort = await startEcho(t)
  await allowLoopback(gateway, [echoPort])
  const tunnels = [await openTunnel(egressPort, `127.0.0.1:${echoPort}`), await openTunnel(egressPort, `127.0.0.1:${echoPort}`)]
  const closed = tunnels.map((tunnel) => once(tunnel, 'close'))
  t.equal(await roundTrip(tunnels[0], 'before'), 'before')

  const signalled = Date.now()
  gateway.process.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.equal(await roundTrip(tunnels[1], 'during'), 'during', 'an open tunnel keeps working during the grace period')
  const refused = await new Promise<boolean>((resolve) => {
    const probe = connect(egressPort, '127.0.0.1')
    probe.on('error', () => resolve(true))
    probe.on('connect', () => { probe.destroy(); resolve(false) })
  })
  t.ok(refused, 'the egress listener no longer accepts')
  await Promise.all(closed)
  const closedAfter = Date.now() - signalled
  t.ok(closedAfter >= 1300, `tunnels closed at the grace deadline (${closedAfter} ms)`)
  t.equal(await gateway.exited, 0)
})

t.test('WORKERS=2: the egress listener runs in every worker', async (t) => {
  const egressPort = await freePort()
  const gateway = await spawnGateway(t, { EGRESS_PORT: String(egressPort), EGRESS_AUTH: 'none', WORKERS: '2' }, { startTimeoutMs: 60_000 })
  const echoPort = await startEcho(t)
  await allowLoopback(gateway, [echoPort])
  // The other worker sees the rule within its poll interval.
  await new Promise((resolve) => setTimeout(resolve, 1200))
  for (let i = 0; i < 4; i++) {
    const tunnel = await openTunnel(egressPort, `127.0.0.1:${echoPort}`)
    t.equal(await roundTrip(tunnel, `n${i}`), `n${i}`)
    tunnel.destroy()
  }
  const status = await httpRequest(`${gateway.url}/admin/status`, { headers: adminHeaders })
  const body = JSON.parse(status.body)
  t.equal(body.egress.allowed, 4, 'egress counters summed over the workers')
  t.equal(body.workers.length, 2)
})
