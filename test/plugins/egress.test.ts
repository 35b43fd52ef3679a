import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { connect, createServer as createNetServer, type Socket } from 'node:net'
import path from 'node:path'
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls'
import { promisify } from 'node:util'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { ProxyAgent, request as undiciRequest } from 'undici'
import { adminHeaders, createConsumer, type TestContext, startGateway, startUpstream, tempDir, type Upstream } from '../helper.js'

const run = promisify(execFile)

interface Proxy {
  app: FastifyInstance
  /** Port of the forward-proxy listener. */
  port: number
}

async function startProxy (t: TestContext, env: Record<string, string> = {}): Promise<Proxy> {
  const { app } = await startGateway(t, {
    env: { EGRESS_AUTH: 'none', ...env },
    build: { egress: { connectTimeoutMs: 2000, dnsTimeoutMs: 2000 } }
  })
  await app.egress.listen(0, '127.0.0.1')
  return { app, port: app.egress.port as number }
}

async function addRule (app: FastifyInstance, rule: Record<string, unknown>): Promise<{ id: string }> {
  const response = await app.inject({ method: 'POST', url: '/admin/egress-rules', headers: adminHeaders, payload: rule })
  if (response.statusCode !== 201) throw new Error(`rule not created: ${response.statusCode} ${response.body}`)
  return response.json()
}

/** Loopback destinations are refused unless an allow rule's cidr names them (this is such a rule). */
const allowLoopback = (app: FastifyInstance, ports: number[] = []): Promise<{ id: string }> =>
  addRule(app, { action: 'allow', cidr: '127.0.0.0/8', ports, reason: 'test upstreams' })

/** One request over a fresh socket; resolves with everything the proxy sent until it closed or `until` matched. */
async function raw (port: number, payload: string, until?: RegExp, timeoutMs = 3000): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  let received = ''
  socket.setEncoding('latin1')
  socket.write(payload)
  return await new Promise<string>((resolve) => {
    const timer = setTimeout(() => { socket.destroy(); resolve(received) }, timeoutMs)
    socket.on('data', (chunk: string) => {
      received += chunk
      if (until !== undefined && until.test(received)) { clearTimeout(timer); socket.destroy(); resolve(received) }
    })
    socket.on('close', () => { clearTimeout(timer); resolve(received) })
    socket.on('error', () => {})
  })
}

function statusOf (response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0)
}

function jsonOf (response: string): { statusCode: number, message: string } {
  return JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4))
}

/** Opens a CONNECT tunnel and resolves with the socket once the 200 head has been read. */
async function openTunnel (port: number, target: string, headers = ''): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${headers}\r\n`)
  let head = Buffer.alloc(0)
  return await new Promise<Socket>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.removeListener('data', onData)
      const text = head.subarray(0, end).toString('latin1')
      if (!text.startsWith('HTTP/1.1 200')) {
        socket.destroy()
        return reject(new Error(`tunnel refused: ${head.toString('latin1')}`))
      }
      const rest = head.subarray(end + 4)
      if (rest.length > 0) socket.unshift(rest)
      resolve(socket)
    }
    socket.on('data', onData)
    socket.once('error', reject)
  })
}

/** A TCP server that echoes, and on the client's FIN writes "bye" and ends (half-close). */
async function startEcho (t: TestContext): Promise<{ port: number, connections: () => number }> {
  let connections = 0
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    connections++
    socket.on('error', () => {})
    socket.on('data', (chunk) => socket.write(chunk))
    socket.on('end', () => socket.end('bye'))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { port: (server.address() as { port: number }).port, connections: () => connections }
}

let tlsMaterial: { key: Buffer, cert: Buffer } | null = null
async function certificate (t: TestContext): Promise<{ key: Buffer, cert: Buffer }> {
  if (tlsMaterial !== null) return tlsMaterial
  const dir = tempDir(t)
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')])
  tlsMaterial = { key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) }
  return tlsMaterial
}

async function startTls (t: TestContext): Promise<{ port: number, cert: Buffer }> {
  const { key, cert } = await certificate(t)
  const server = createTlsServer({ key, cert }, (socket) => {
    socket.on('error', () => {})
    socket.on('data', (chunk) => socket.write(`tls:${chunk.toString()}`))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { port: (server.address() as { port: number }).port, cert }
}

async function waitFor (condition: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function egressRows (app: FastifyInstance): Promise<Array<Record<string, unknown>>> {
  await app.audit.flush()
  const response = await app.inject({ method: 'GET', url: '/admin/audit/logs?eventType=egress', headers: adminHeaders })
  return response.json().items
}

function basic (user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
}

t.test('plain HTTP through the proxy with curl -x: body both ways, hop-by-hop and Proxy-* removed, Via both ways, audited', async (t) => {
  const { app, port } = await startProxy(t)
  const upstream: Upstream = await startUpstream(t)
  await allowLoopback(app)
  const { stdout } = await run('curl', ['-sS', '-i', '-x', `http://127.0.0.1:${port}`, '--data-binary', 'hello body',
    '-H', 'Proxy-Foo: secret', '-H', 'X-Custom: kept', '-H', 'Connection: x-drop', '-H', 'X-Drop: 1', `${upstream.url}/echo/path?q=1`])
  t.equal(statusOf(stdout), 200)
  t.match(stdout, /\r\nvia: 1\.1 gatehouse\r\n/i, 'Via on the answer')
  const echoed = JSON.parse(stdout.slice(stdout.indexOf('\r\n\r\n') + 4))
  t.equal(echoed.method, 'POST')
  t.equal(echoed.url, '/echo/path?q=1', 'origin-form path and query upstream')
  t.equal(echoed.body, 'hello body')
  t.equal(echoed.headers.host, `127.0.0.1:${upstream.port}`)
  t.equal(echoed.headers['x-custom'], 'kept')
  t.equal(echoed.headers['proxy-foo'], undefined, 'Proxy-* not forwarded')
  t.equal(echoed.headers['proxy-connection'], undefined)
  t.equal(echoed.headers['x-drop'], undefined, 'headers named by Connection are not forwarded')
  t.equal(echoed.headers.via, '1.1 gatehouse')

  const rows = await egressRows(app)
  t.equal(rows.length, 1)
  t.match(rows[0], { eventType: 'egress', method: 'POST', path: `http://127.0.0.1:${upstream.port}/echo/path`, status: 200, outcome: 'proxied', bytesIn: 10 })
  t.ok((rows[0].bytesOut as number) > 10, 'bytes out counted')
  const status = (await app.inject({ method: 'GET', url: '/admin/status', headers: adminHeaders })).json()
  t.match(status.egress, { activeTunnels: 0, activeRequests: 0, allowed: 1, blocked: 0, bytesIn: 10 })
})

t.test('undici ProxyAgent with basic credentials; 407 without or with wrong ones; Proxy-Authorization never forwarded', async (t) => {
  const { app, port } = await startProxy(t, { EGRESS_AUTH: 'basic' })
  const upstream = await startUpstream(t)
  // ProxyAgent tunnels every request with CONNECT, here to the upstream's port.
  await allowLoopback(app, [upstream.port])
  const consumer = await createConsumer(app, 'crawler')
  const put = await app.inject({ method: 'PUT', url: `/admin/consumers/${consumer.id}/basic`, headers: adminHeaders, payload: { username: 'crawler', password: 'pa55word' } })
  t.equal(put.statusCode, 200)

  const agent = new ProxyAgent({ uri: `http://127.0.0.1:${port}`, token: basic('crawler', 'pa55word') })
  const ok = await undiciRequest(`${upstream.url}/x`, { dispatcher: agent })
  const echoed = await ok.body.json() as { headers: Record<string, string> }
  t.equal(ok.statusCode, 200)
  t.equal(echoed.headers['proxy-authorization'], undefined)

  const missing = await raw(port, `GET ${upstream.url}/x HTTP/1.1\r\nHost: x\r\n\r\n`, /\}$/)
  t.equal(statusOf(missing), 407)
  t.match(missing, /\r\nproxy-authenticate: Basic realm="gatehouse"\r\n/i)
  t.equal(jsonOf(missing).statusCode, 407)
  const wrong = await raw(port, `GET ${upstream.url}/x HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('crawler', 'nope')}\r\n\r\n`, /\}$/)
  t.equal(statusOf(wrong), 407)
  const garbage = await raw(port, `GET ${upstream.url}/x HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic %%%\r\n\r\n`, /\}$/)
  t.equal(statusOf(garbage), 407)
  const connectMissing = await raw(port, `CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nHost: x\r\n\r\n`, /\}$/)
  t.equal(statusOf(connectMissing), 407, 'CONNECT needs credentials too')
  t.match(connectMissing, /proxy-authenticate: Basic realm="gatehouse"/i)
  t.equal(upstream.requests.length, 1, 'only the authenticated request reached the upstream')

  await agent.close()
  await waitFor(() => app.egress.stats.activeTunnels === 0)
  const rows = await egressRows(app)
  t.equal(rows.filter((row) => row.outcome === 'unauthorized' && row.status === 407).length, 4)
  t.ok(rows.some((row) => row.outcome === 'proxied' && row.consumerId === consumer.id), 'the consumer is on the row')
})

t.test('the consumer\'s rateLimit applies to its egress requests and tunnels, one hit each', async (t) => {
  const { app, port } = await startProxy(t, { EGRESS_AUTH: 'basic' })
  const upstream = await startUpstream(t)
  await allowLoopback(app)
  const consumer = await createConsumer(app, 'limited', { max: 2, windowMs: 60_000 })
  await app.inject({ method: 'PUT', url: `/admin/consumers/${consumer.id}/basic`, headers: adminHeaders, payload: { username: 'limited', password: 'pa55word' } })
  const auth = `Proxy-Authorization: ${basic('limited', 'pa55word')}\r\n`
  t.equal(statusOf(await raw(port, `GET ${upstream.url}/1 HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`)), 200)
  const echo = await startEcho(t)
  await addRule(app, { action: 'allow', cidr: '127.0.0.1', ports: [echo.port] })
  const tunnel = await openTunnel(port, `127.0.0.1:${echo.port}`, auth)
  tunnel.destroy()
  const third = await raw(port, `GET ${upstream.url}/3 HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, /\}$/)
  t.equal(statusOf(third), 429)
  t.match(third, /\r\nretry-after: \d+\r\n/i)
  t.equal(upstream.requests.length, 1)
})

t.test('CONNECT to a local TLS server: node:tls and curl speak TLS end to end through the tunnel', async (t) => {
  const { app, port } = await startProxy(t)
  const tls = await startTls(t)
  await addRule(app, { action: 'allow', cidr: '127.0.0.0/8', ports: [tls.port] })

  const tunnel = await openTunnel(port, `127.0.0.1:${tls.port}`)
  const secure = tlsConnect({ socket: tunnel, ca: tls.cert, servername: 'localhost' })
  await once(secure, 'secureConnect')
  secure.write('ping')
  const [answer] = await once(secure, 'data') as [Buffer]
  t.equal(answer.toString(), 'tls:ping')
  secure.destroy()

  const dir = tempDir(t)
  const caFile = path.join(dir, 'ca.pem')
  writeFileSync(caFile, tls.cert)
  const https = createTlsServerHttps(await certificate(t))
  https.listen(0, '127.0.0.1')
  await once(https, 'listening')
  t.teardown(() => new Promise<void>((resolve) => { https.closeAllConnections(); https.close(() => resolve()) }))
  const httpsPort = (https.address() as { port: number }).port
  await addRule(app, { action: 'allow', cidr: '127.0.0.1', ports: [httpsPort] })
  const { stdout } = await run('curl', ['-sS', '-x', `http://127.0.0.1:${port}`, '--cacert', caFile, `https://localhost:${httpsPort}/secret`])
  t.equal(stdout, 'https /secret', 'curl through CONNECT with its own TLS')

  await waitFor(() => app.egress.stats.activeTunnels === 0)
  const rows = await egressRows(app)
  const tunnels = rows.filter((row) => row.method === 'CONNECT')
  t.equal(tunnels.length, 2)
  t.match(tunnels.find((row) => row.path === `localhost:${httpsPort}`), { status: 200, outcome: 'proxied' })
  t.ok(tunnels.every((row) => (row.bytesIn as number) > 0 && (row.bytesOut as number) > 0), 'bytes both ways on tunnel rows')
})

function createTlsServerHttps ({ key, cert }: { key: Buffer, cert: Buffer }): HttpsServer {
  return createHttpsServer({ key, cert }, (req, res) => res.end(`https ${req.url}`))
}

t.test('a name resolving to 127.0.0.1 is refused without an allow rule, as are decimal, hex and IPv4-mapped spellings', async (t) => {
  const { app, port } = await startProxy(t)
  const upstream = await startUpstream(t)
  const echo = await startEcho(t)
  for (const host of ['localhost', '127.0.0.1', '2130706433', '0x7f.0.0.1', '0177.0.0.1', '127.1', '[::ffff:127.0.0.1]', '[::1]', '0.0.0.0']) {
    const answer = await raw(port, `GET http://${host}:${upstream.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`, /\}$/)
    t.equal(statusOf(answer), 403, `${host} refused`)
    t.match(jsonOf(answer).message, /(loopback|unspecified) address/, `${host}: the reason is named`)
  }
  const connectAnswer = await raw(port, 'CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n', /\}$/)
  t.equal(statusOf(connectAnswer), 403)
  t.equal(upstream.requests.length, 0)
  t.equal(echo.connections(), 0)
  const metrics = await app.inject({ method: 'GET', url: '/metrics', headers: adminHeaders })
  t.match(metrics.body, /gatehouse_egress_refusals_total\{reason="special_address"\} 10/)
  t.equal(app.egress.stats.blocked, 10)
})

t.test('rules: exact host, *.suffix (subdomains only), cidr; deny wins; allow cidr opens loopback', async (t) => {
  const { app, port } = await startProxy(t)
  const upstream = await startUpstream(t)
  const get = async (host: string): Promise<string> => await raw(port, `GET http://${host}:${upstream.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)

  await allowLoopback(app)
  t.equal(statusOf(await get('localhost')), 200, 'allow cidr 127.0.0.0/8 admits a name resolving there')

  const exact = await addRule(app, { action: 'deny', host: 'localhost', reason: 'no local names' })
  const byName = await get('localhost')
  t.equal(statusOf(byName), 403)
  t.match(jsonOf(byName).message, new RegExp(`egress rule ${exact.id} \\(localhost\\): no local names`))
  t.equal(statusOf(await get('127.0.0.1')), 200, 'an exact host rule does not match the address')

  const wildcard = await addRule(app, { action: 'deny', host: '*.example.test' })
  const sub = await get('a.b.example.test')
  t.equal(statusOf(sub), 403)
  t.match(jsonOf(sub).message, wildcard.id)
  const apex = await get('example.test')
  t.not(statusOf(apex), 403, '*.example.test does not match example.test itself')

  const cidr = await addRule(app, { action: 'deny', cidr: '127.0.0.1/32' })
  const denied = await get('127.0.0.1')
  t.equal(statusOf(denied), 403, 'deny wins over the allow cidr')
  t.match(jsonOf(denied).message, cidr.id)
  t.equal(statusOf(await get('127.0.0.2')), 502, 'the /32 deny leaves 127.0.0.2 to the allow rule (nothing listens there)')
  t.equal(upstream.requests.length, 2)

  // Deleting the rule re-opens the destination before the response.
  const deleted = await app.inject({ method: 'DELETE', url: `/admin/egress-rules/${cidr.id}`, headers: adminHeaders })
  t.equal(deleted.statusCode, 204)
  t.equal(statusOf(await get('127.0.0.1')), 200)
})

t.test('CONNECT ports: 443 only unless an allow rule lists the port', async (t) => {
  const { app, port } = await startProxy(t)
  const echo = await startEcho(t)
  await allowLoopback(app)
  const refused = await raw(port, `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\n`, /\}$/)
  t.equal(statusOf(refused), 403)
  t.match(jsonOf(refused).message, new RegExp(`port ${echo.port}`))
  t.equal(echo.connections(), 0)
  await addRule(app, { action: 'allow', cidr: '127.0.0.1', ports: [echo.port] })
  const tunnel = await openTunnel(port, `127.0.0.1:${echo.port}`)
  tunnel.write('abc')
  const [data] = await once(tunnel, 'data') as [Buffer]
  t.equal(data.toString(), 'abc')
  tunnel.destroy()
  const metrics = await app.inject({ method: 'GET', url: '/metrics', headers: adminHeaders })
  t.match(metrics.body, /gatehouse_egress_refusals_total\{reason="port"\} 1/)
})

t.test('an expired allow rule stops applying by itself; EGRESS_DEFAULT=deny refuses what no rule allows', async (t) => {
  const { app, port } = await startProxy(t, { EGRESS_DEFAULT: 'deny' })
  const upstream = await startUpstream(t)
  const get = async (host: string): Promise<string> => await raw(port, `GET http://${host}:${upstream.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
  await addRule(app, { action: 'allow', host: 'localhost', cidr: '127.0.0.0/8', expiresAt: new Date(Date.now() + 1500).toISOString() })
  t.equal(statusOf(await get('localhost')), 200)
  const byAddress = await get('127.0.0.1')
  t.equal(statusOf(byAddress), 403, 'the host rule does not admit the bare address')
  t.match(jsonOf(byAddress).message, /EGRESS_DEFAULT is deny|loopback/)
  await new Promise((resolve) => setTimeout(resolve, 1600))
  t.equal(statusOf(await get('localhost')), 403, 'expired')
  t.equal(upstream.requests.length, 1)
})

t.test('tunnels: half-close, idle close, a dripping client kept past the request timeout, an abandoned one cleaned up', async (t) => {
  const { app, port } = await startProxy(t, { EGRESS_IDLE_TIMEOUT_MS: '400', HEADERS_TIMEOUT_MS: '300', REQUEST_TIMEOUT_MS: '300' })
  const echo = await startEcho(t)
  await addRule(app, { action: 'allow', cidr: '127.0.0.1', ports: [echo.port] })

  // Half-close: our FIN reaches the destination, which still answers.
  const half = await openTunnel(port, `127.0.0.1:${echo.port}`)
  let received = ''
  half.on('data', (chunk: Buffer) => { received += chunk.toString() })
  half.write('one')
  half.end()
  await once(half, 'close')
  t.equal(received, 'onebye', 'the answer after our FIN arrived')

  // Dripping: a byte every 100 ms keeps it open well past the idle and request timeouts.
  const drip = await openTunnel(port, `127.0.0.1:${echo.port}`)
  let echoed = 0
  drip.on('data', (chunk: Buffer) => { echoed += chunk.length })
  for (let i = 0; i < 10; i++) {
    drip.write('x')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.notOk(drip.destroyed, 'still open after 1 s of dripping')
  t.equal(echoed, 10)
  // Then idle: closed after EGRESS_IDLE_TIMEOUT_MS.
  const idleStart = Date.now()
  await once(drip, 'close')
  t.ok(Date.now() - idleStart >= 250, 'closed once idle for EGRESS_IDLE_TIMEOUT_MS')

  // Abandoned: the client vanishes; the destination side closes and the tunnel is gone.
  const abandoned = await openTunnel(port, `127.0.0.1:${echo.port}`)
  abandoned.destroy()
  await waitFor(() => app.egress.stats.activeTunnels === 0)

  const rows = (await egressRows(app)).filter((row) => row.method === 'CONNECT')
  t.equal(rows.length, 3)
  t.ok(rows.some((row) => row.detail === 'tunnel idle'), 'the idle close is on the row')
})

t.test('bad input is answered 400 and nothing is forwarded', async (t) => {
  const { app, port } = await startProxy(t)
  const upstream = await startUpstream(t)
  const echo = await startEcho(t)
  await allowLoopback(app, [echo.port, upstream.port])
  const longHost = 'a'.repeat(10 * 1024)
  const cases: Array<[string, string]> = [
    ['CONNECT without a port', 'CONNECT 127.0.0.1 HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['CONNECT to a path', `CONNECT 127.0.0.1:${echo.port}/x HTTP/1.1\r\nHost: x\r\n\r\n`],
    ['CONNECT with userinfo', `CONNECT u:p@127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\n`],
    ['CONNECT port 0', 'CONNECT 127.0.0.1:0 HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['CONNECT port 70000', 'CONNECT 127.0.0.1:70000 HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['CONNECT to a 10 KiB host', `CONNECT ${longHost}:443 HTTP/1.1\r\nHost: x\r\n\r\n`],
    ['absolute-form with userinfo', `GET http://user:pass@127.0.0.1:${upstream.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`],
    ['absolute-form with a 10 KiB host', `GET http://${longHost}/ HTTP/1.1\r\nHost: x\r\n\r\n`],
    ['origin-form', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['https:// absolute-form', `GET https://127.0.0.1:${upstream.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`],
    ['a bad IP literal', `GET http://999.1.1.1:${upstream.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`],
    ['an unbracketed IPv6 literal', `CONNECT ::1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\n`]
  ]
  for (const [name, payload] of cases) {
    const answer = await raw(port, payload, /\}$/)
    t.equal(statusOf(answer), 400, name)
    const body = jsonOf(answer)
    t.equal(body.statusCode, 400, `${name}: JSON body`)
    t.ok(body.message.length > 0 && body.message.length < 400, `${name}: a short message (${body.message})`)
  }
  t.equal(upstream.requests.length, 0, 'nothing forwarded')
  t.equal(echo.connections(), 0, 'no tunnel opened')
  const rows = await egressRows(app)
  t.equal(rows.filter((row) => row.status === 400).length, cases.length, 'every bad request audited')
})

t.test('admin: /admin/egress-rules validation names the field, 404 for unknown ids, part of GET/PUT /admin/config and the admin audit', async (t) => {
  const { app } = await startProxy(t)
  const post = async (payload: unknown): Promise<{ statusCode: number, message: string }> => {
    const response = await app.inject({ method: 'POST', url: '/admin/egress-rules', headers: adminHeaders, payload: payload as Record<string, unknown> })
    return { statusCode: response.statusCode, message: response.json().message }
  }
  t.match(await post({ action: 'deny' }), { statusCode: 400, message: /at least one of host or cidr/ })
  t.match(await post({ action: 'block', host: 'a.com' }), { statusCode: 400, message: /action/ })
  t.match(await post({ action: 'deny', host: 'not a host' }), { statusCode: 400, message: /body\/host/ })
  t.match(await post({ action: 'deny', host: '10.0.0.1' }), { statusCode: 400, message: /body\/host.*cidr/ })
  t.match(await post({ action: 'deny', cidr: '10.0.0.0/33' }), { statusCode: 400, message: /body\/cidr/ })
  t.match(await post({ action: 'deny', host: 'a.com', ports: [0] }), { statusCode: 400, message: /ports/ })
  t.match(await post({ action: 'deny', host: 'a.com', expiresAt: 'tomorrow' }), { statusCode: 400, message: /expiresAt/ })
  t.match(await post({ action: 'deny', host: 'a.com', extra: 1 }), { statusCode: 400, message: /extra/ })

  const created = await app.inject({ method: 'POST', url: '/admin/egress-rules', headers: adminHeaders, payload: { action: 'deny', host: 'Files.Example.COM.', cidr: '10.1.2.3/8', ports: [443, 80, 443] } })
  t.equal(created.statusCode, 201)
  const rule = created.json()
  t.equal(created.headers.location, `/admin/egress-rules/${rule.id}`)
  t.match(rule, { action: 'deny', host: 'files.example.com', cidr: '10.0.0.0/8', ports: [80, 443], expiresAt: null, reason: '' })
  t.same((await app.inject({ method: 'GET', url: `/admin/egress-rules/${rule.id}`, headers: adminHeaders })).json(), rule)
  t.equal((await app.inject({ method: 'GET', url: '/admin/egress-rules/nope', headers: adminHeaders })).statusCode, 404)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/egress-rules/nope', headers: adminHeaders })).statusCode, 404)
  t.match((await app.inject({ method: 'GET', url: '/admin/egress-rules', headers: adminHeaders })).json(), { total: 1, items: [{ id: rule.id }] })

  const document = (await app.inject({ method: 'GET', url: '/admin/config', headers: adminHeaders })).json()
  t.same(document.egressRules, [rule])
  document.egressRules = [{ action: 'allow', cidr: '192.168.0.0/16' }]
  const put = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: document })
  t.equal(put.statusCode, 200, put.body)
  t.match(app.egress.rules, [{ action: 'allow', cidr: '192.168.0.0/16', host: null }])
  document.egressRules = [{ action: 'allow', cidr: 'nope' }]
  const bad = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: document })
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /egressRules\/0\/cidr/)

  await app.audit.flush()
  const admin = (await app.inject({ method: 'GET', url: '/admin/audit/logs?eventType=admin', headers: adminHeaders })).json().items
  t.ok(admin.some((row: { detail: { resource: string, action: string } }) => row.detail.resource === 'egress-rule' && row.detail.action === 'create'))
  const openapi = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
  t.ok(openapi.paths['/admin/egress-rules'] !== undefined && openapi.paths['/admin/egress-rules/{id}'] !== undefined, 'in the OpenAPI document')
})

t.test('a rule added on one instance applies on another sharing the database within 1 s', async (t) => {
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'shared.db')}`
  const one = await startGateway(t, { databaseUrl, env: { EGRESS_AUTH: 'none' } })
  const two = await startGateway(t, { databaseUrl, env: { EGRESS_AUTH: 'none' } })
  await two.app.egress.listen(0, '127.0.0.1')
  const upstream = await startUpstream(t)
  const get = async (): Promise<number> => statusOf(await raw(two.app.egress.port as number, `GET ${upstream.url}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`))
  t.equal(await get(), 403)
  await allowLoopback(one.app)
  const started = Date.now()
  await waitFor(async () => await get() === 200, 2000)
  t.ok(Date.now() - started < 1000, 'within 1 s')
})

t.test('tunnel backpressure: a destination that reads nothing stops the client\'s bytes at the socket buffers; all arrive once it reads', async (t) => {
  const { app, port } = await startProxy(t)
  let destination: Socket | null = null
  let received = 0
  const server = createNetServer((socket) => {
    destination = socket
    socket.pause()
    socket.on('data', (chunk: Buffer) => { received += chunk.length })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => { (destination as Socket | null)?.destroy(); server.close(() => resolve()) }))
  const destinationPort = (server.address() as { port: number }).port
  await addRule(app, { action: 'allow', cidr: '127.0.0.1', ports: [destinationPort] })

  const tunnel = await openTunnel(port, `127.0.0.1:${destinationPort}`)
  const total = 64 * 1024 * 1024
  tunnel.write(Buffer.alloc(total, 1))
  await new Promise((resolve) => setTimeout(resolve, 1000))
  // What the proxy did not read is still queued in the client: without backpressure the proxy
  // would have read all 64 MiB into its own memory.
  t.ok(tunnel.writableLength > total / 2, `${(tunnel.writableLength / 1048576).toFixed(1)} MiB of 64 still wait in the client while the destination reads nothing`)
  t.equal(received, 0)
  ;(destination as unknown as Socket).resume()
  await waitFor(() => received === total, 20_000)
  t.equal(received, total, 'every byte arrived once the destination read')
  tunnel.destroy()
})

t.test('what the HTTP parser refuses on the egress listener is answered JSON and audited', async (t) => {
  const { app, port } = await startProxy(t)
  const malformed = await raw(port, 'GET http://127.0.0.1/ HTTP/1.1\r\nBad Header\r\n\r\n', /\}$/)
  t.equal(statusOf(malformed), 400)
  t.equal(jsonOf(malformed).statusCode, 400)
  const huge = await raw(port, `GET http://127.0.0.1/ HTTP/1.1\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`, /\}$/)
  t.equal(statusOf(huge), 431)
  const rows = await egressRows(app)
  t.same(rows.map((row) => row.status).sort(), [400, 431])
})
