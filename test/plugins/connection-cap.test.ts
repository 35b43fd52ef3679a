import { connect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import t from 'tap'
import { ADMIN_TOKEN, startGateway, type TestContext } from '../helper.js'

/** A client connection opened and left idle; `closed` resolves with the bytes received once the server closes it. */
interface Held { socket: Socket, closed: Promise<string> }

async function open (t: TestContext, port: number): Promise<Held> {
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const closed = new Promise<string>((resolve) => {
    socket.on('error', () => {})
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return { socket, closed }
}

/** One keep-alive request on an already open connection; resolves with the status code and body. */
async function ask (socket: Socket, path: string, headers = ''): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    let received = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk])
      const text = received.toString('latin1')
      const headEnd = text.indexOf('\r\n\r\n')
      if (headEnd === -1) return
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(text)?.[1] ?? 0)
      if (received.length < headEnd + 4 + length) return
      socket.off('data', onData)
      resolve({ status: Number(text.slice(9, 12)), body: text.slice(headEnd + 4, headEnd + 4 + length) })
    }
    socket.on('data', onData)
    socket.once('close', () => reject(new Error(`connection closed while asking for ${path}`)))
    socket.write(`GET ${path} HTTP/1.1\r\nHost: gatehouse.test\r\n${headers}\r\n`)
  })
}

async function until (condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

t.test('MAX_CONNECTIONS=20: 20 idle connections stay open and serve, the 21st to 25th are closed at once, and new ones are accepted once they go', async (t) => {
  const warnings: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') warnings.push(JSON.parse(line))
      done()
    }
  })
  const { app, port } = await startGateway(t, { env: { MAX_CONNECTIONS: '20' }, build: { logger: { level: 'warn', stream } } })
  const { traffic } = app.metrics

  const held: Held[] = []
  for (let i = 0; i < 20; i++) held.push(await open(t, port))
  await until(() => traffic.activeConnections === 20, '20 accepted connections')

  const refusedAt = Date.now()
  const refused = await Promise.all(Array.from({ length: 5 }, async () => await open(t, port)))
  const answers = await Promise.all(refused.map(async ({ closed }) => await closed))
  // Closed long before anything else would close an idle connection (HEADERS_TIMEOUT_MS is 10 s).
  t.ok(Date.now() - refusedAt < 3000, `refused connections closed within ${Date.now() - refusedAt} ms`)
  t.same(answers, ['', '', '', '', ''], 'closed without a byte written')
  t.equal(traffic.activeConnections, 20, 'refused connections never count as open ones')

  // Every held connection is still open and serves.
  for (const { socket } of held) t.same(await ask(socket, '/health'), { status: 200, body: '{"status":"ok"}' })
  const metrics = await ask(held[0].socket, '/metrics', `Authorization: Bearer ${ADMIN_TOKEN}\r\n`)
  t.equal(metrics.status, 200)
  t.match(metrics.body, /^# TYPE gatehouse_connections_refused_total counter\ngatehouse_connections_refused_total\{listener="main"\} 5$/m)
  const status = await ask(held[1].socket, '/admin/status', `Authorization: Bearer ${ADMIN_TOKEN}\r\n`)
  t.equal(status.status, 200)
  const { activeConnections, maxConnections } = JSON.parse(status.body)
  t.same({ activeConnections, maxConnections }, { activeConnections: 20, maxConnections: 20 })
  t.equal(app.connectionCap.refused('main'), 5)

  // One warning for the whole burst (at most one every 10 s).
  const capWarnings = warnings.filter((line) => line.msg === 'connection limit reached: new connections are closed at once (MAX_CONNECTIONS)')
  t.equal(capWarnings.length, 1)
  t.match(capWarnings[0], { level: 40, listener: 'main', maxConnections: 20, refused: 1, remoteAddress: '127.0.0.1' })

  for (const { socket } of held) socket.destroy()
  await until(() => traffic.activeConnections === 0, 'the held connections to close')

  const fresh: Held[] = []
  for (let i = 0; i < 20; i++) fresh.push(await open(t, port))
  for (const { socket } of fresh) t.same(await ask(socket, '/health'), { status: 200, body: '{"status":"ok"}' })
  t.equal(await (await open(t, port)).closed, '', 'the cap still holds: one more is refused')
  t.equal(app.connectionCap.refused('main'), 6)
  t.equal(warnings.filter((line) => line.msg === capWarnings[0].msg).length, 1, 'no second warning within 10 s')
})

t.test('without MAX_CONNECTIONS the cap is 10000 and nothing is refused', async (t) => {
  const { app } = await startGateway(t)
  t.equal(app.server.maxConnections, 10_000)
  t.equal(app.connectionCap.refused('main'), 0)
  t.throws(() => app.connectionCap.apply(app.server, 'main'), /listener "main" is already capped/)
})
