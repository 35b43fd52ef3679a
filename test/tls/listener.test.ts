import { connect as h2connect, constants as h2, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2'
import { request as httpsRequest } from 'node:https'
import t from 'tap'
import { Agent } from 'undici'
import { adminHeaders, createRoute, httpRequest, type HttpRequestOptions, startUpstream } from '../helper.js'
import { startTlsGateway } from '../tls-helper.js'

/** The HTTPS listener: same gateway over TLS, HTTP/1.1 and HTTP/2, httpsRedirect (docs/tls.md). */

const insecure = new Agent({ connect: { rejectUnauthorized: false } })
t.teardown(() => insecure.close())
/** The test's certificates are self-made: the client does not verify them. */
const viaTls = { dispatcher: insecure } as unknown as HttpRequestOptions

interface H2Answer { status: number, headers: IncomingHttpHeaders, body: string }

function h2get (session: ClientHttp2Session, path: string, headers: Record<string, string> = {}): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ...headers })
    let body = ''
    let head: IncomingHttpHeaders = {}
    stream.setEncoding('utf8')
    stream.on('response', (h) => { head = h })
    stream.on('data', (chunk: string) => { body += chunk })
    stream.on('end', () => { resolve({ status: Number(head[':status']), headers: head, body }) })
    stream.on('error', reject)
  })
}

function h2session (t: { teardown: (fn: () => unknown) => void }, tlsPort: number): ClientHttp2Session {
  const session = h2connect(`https://127.0.0.1:${tlsPort}`, { rejectUnauthorized: false })
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  return session
}

t.test('HTTPS over HTTP/1.1: proxied with X-Forwarded-Proto https; admin and health on the same listener', async (t) => {
  const upstream = await startUpstream(t)
  const { app, tlsUrl } = await startTlsGateway(t)
  await createRoute(app, { name: 'echo', path: '/echo', targets: [{ url: upstream.url, weight: 1 }] })
  const proxied = await httpRequest(`${tlsUrl}/echo/x?y=1`, viaTls)
  t.equal(proxied.statusCode, 200)
  t.equal(upstream.requests[0].url, '/echo/x?y=1')
  t.equal(upstream.requests[0].headers['x-forwarded-proto'], 'https')
  t.equal(proxied.headers.via, '1.1 gatehouse')
  t.equal((await httpRequest(`${tlsUrl}/health`, viaTls)).statusCode, 200)
  const routes = await httpRequest(`${tlsUrl}/admin/routes`, { ...viaTls, headers: adminHeaders })
  t.equal(routes.statusCode, 200)
  t.equal(routes.json().total, 1)
  t.equal((await httpRequest(`${tlsUrl}/docs/json`, viaTls)).statusCode, 200)
  // The plain listener still says http.
  await httpRequest(`${(app.server.address() as { port: number }).port === 0 ? '' : `http://127.0.0.1:${(app.server.address() as { port: number }).port}`}/echo/plain`)
  t.equal(upstream.requests[1].headers['x-forwarded-proto'], 'http')
})

t.test('HTTPS keeps the main listener\'s limits: oversized headers 431 as JSON', async (t) => {
  const { tlsPort } = await startTlsGateway(t)
  const status = await new Promise<number>((resolve, reject) => {
    const request = httpsRequest({ host: '127.0.0.1', port: tlsPort, path: '/x', rejectUnauthorized: false, headers: { 'x-big': 'a'.repeat(20_000) } }, (response) => {
      response.resume()
      resolve(response.statusCode ?? 0)
    })
    request.on('error', reject)
    request.end()
  })
  t.equal(status, 431)
})

t.test('HTTP/2: proxied requests, admin and docs; no connection-specific headers in answers; 100 streams', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    // An upstream that sends hop-by-hop headers: none may reach an HTTP/2 client.
    res.writeHead(200, { connection: 'keep-alive, x-hop', 'keep-alive': 'timeout=5', 'x-hop': '1', 'content-type': 'application/json' })
    res.end(JSON.stringify({ url: req.url, proto: req.headers['x-forwarded-proto'], host: req.headers.host, via: req.headers.via }))
  })
  const { app, tlsPort } = await startTlsGateway(t)
  await createRoute(app, { name: 'echo', path: '/echo', targets: [{ url: upstream.url, weight: 1 }] })
  await createRoute(app, { name: 'kept', path: '/kept', preserveHost: true, targets: [{ url: upstream.url, weight: 1 }] })
  const session = h2session(t, tlsPort)
  const answer = await h2get(session, '/echo/a?b=2')
  t.equal(answer.status, 200)
  const seen = JSON.parse(answer.body)
  t.equal(seen.url, '/echo/a?b=2')
  t.equal(seen.proto, 'https')
  t.equal(seen.via, '2.0 gatehouse')
  for (const name of ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'x-hop', 'proxy-connection']) t.notOk(name in answer.headers, `no ${name}`)
  t.equal(session.alpnProtocol, 'h2')
  t.equal(session.remoteSettings.maxConcurrentStreams, 100)
  const kept = JSON.parse((await h2get(session, '/kept', { ':authority': 'api.example.com' })).body)
  t.equal(kept.host, 'api.example.com', 'preserveHost takes :authority')
  t.equal((await h2get(session, '/nothing')).status, 404)
  // Over 16 KiB of headers: nghttp2 resets the stream once the client knows the advertised
  // limit; a client that sends before it does gets 431 from the gateway, as on HTTP/1.1.
  const big = await h2get(session, '/echo/big', { 'x-big': 'a'.repeat(20_000) }).then((answer) => String(answer.status), (err: Error) => err.message)
  t.match(big, /^431$|ENHANCE_YOUR_CALM/, `headers over 16 KiB refused (${big})`)
  t.equal((await h2get(session, '/echo/after')).status, 200, 'the session goes on')
  const early = h2connect(`https://127.0.0.1:${tlsPort}`, { rejectUnauthorized: false })
  early.on('error', () => {})
  t.teardown(() => { early.destroy() })
  const beforeSettings = await h2get(early, '/echo/big', { 'x-big': 'a'.repeat(20_000) }).then((answer) => String(answer.status), (err: Error) => err.message)
  t.match(beforeSettings, /^431$|ENHANCE_YOUR_CALM/, `also before the settings arrived (${beforeSettings})`)
  const admin = await h2get(session, '/admin/routes', adminHeaders)
  t.equal(admin.status, 200)
  t.equal(JSON.parse(admin.body).total, 2)
  t.equal((await h2get(session, '/docs/json')).status, 200)
  t.equal((await h2get(session, '/health')).status, 200)
})

t.test('HTTP/2: at most 100 streams of one connection run at once', async (t) => {
  let inFlight = 0
  let most = 0
  const upstream = await startUpstream(t, (_req, res) => {
    inFlight++
    most = Math.max(most, inFlight)
    setTimeout(() => { inFlight--; res.end('ok') }, 150)
  })
  const { app, tlsPort } = await startTlsGateway(t)
  await createRoute(app, { name: 'slow', path: '/slow', targets: [{ url: upstream.url, weight: 1 }] })
  const session = h2session(t, tlsPort)
  await new Promise((resolve) => session.once('remoteSettings', resolve))
  const results = await Promise.allSettled(Array.from({ length: 150 }, () => h2get(session, '/slow')))
  const ok = results.filter((result) => result.status === 'fulfilled' && result.value.status === 200).length
  t.ok(most <= 100, `at most 100 at once upstream (saw ${most})`)
  t.ok(ok >= 100, `the streams within the limit were served (${ok} of 150)`)
})

t.test('HTTP/2 rapid reset flood: the session is cut off and the gateway keeps serving', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => { setTimeout(() => res.end('ok'), 50) })
  const { app, tlsPort } = await startTlsGateway(t)
  await createRoute(app, { name: 'r', path: '/r', targets: [{ url: upstream.url, weight: 1 }] })
  const session = h2session(t, tlsPort)
  await new Promise((resolve) => session.once('remoteSettings', resolve))
  const closed = new Promise<string>((resolve) => {
    session.once('goaway', (code) => { resolve(`goaway ${code}`) })
    session.once('close', () => { resolve('close') })
  })
  let sent = 0
  const floodStarted = Date.now()
  for (let round = 0; round < 50 && !session.destroyed && !session.closed; round++) {
    for (let i = 0; i < 100; i++) {
      if (session.destroyed || session.closed) break
      try {
        const stream = session.request({ ':path': '/r' })
        stream.on('error', () => {})
        stream.close(h2.NGHTTP2_CANCEL)
        sent++
      } catch { break }
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  const how = await Promise.race([closed, new Promise<string>((resolve) => setTimeout(() => resolve('still open'), 10_000))])
  t.comment(`cut off after ${Date.now() - floodStarted} ms; upstream saw ${upstream.requests.length}`)
  t.not(how, 'still open', `flooding session cut off after ${sent} resets (${how})`)
  // Reset streams are not left waiting upstream (they would hold the pool's connections).
  const probe = Date.now()
  t.equal((await httpRequest(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/r`)).statusCode, 200)
  t.ok(Date.now() - probe < 10_000, `the route answers again at once (${Date.now() - probe} ms)`)
  t.ok(upstream.requests.length < 100, `reset streams were not sent upstream (${upstream.requests.length})`)
  const fresh = h2session(t, tlsPort)
  t.equal((await h2get(fresh, '/r')).status, 200, 'others still served')
  t.equal((await httpRequest(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/health`)).statusCode, 200)
})

t.test('httpsRedirect: 308 to the same URL on https with TLS_PORT; served on the HTTPS listener', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url, tlsUrl, tlsPort } = await startTlsGateway(t)
  await createRoute(app, { name: 'secure', path: '/secure', httpsRedirect: true, targets: [{ url: upstream.url, weight: 1 }] })
  await createRoute(app, { name: 'open', path: '/open', targets: [{ url: upstream.url, weight: 1 }] })
  const redirected = await httpRequest(`${url}/secure/a/b?c=1&d=%20`, { method: 'POST', body: 'x', headers: { host: 'api.example.com:8080' } })
  t.equal(redirected.statusCode, 308)
  t.equal(redirected.headers.location, `https://api.example.com:${tlsPort}/secure/a/b?c=1&d=%20`)
  t.equal(redirected.json().statusCode, 308)
  t.equal(upstream.requests.length, 0, 'not forwarded')
  t.equal((await httpRequest(`${tlsUrl}/secure/a`, viaTls)).statusCode, 200, 'served over https')
  t.equal((await httpRequest(`${url}/open`)).statusCode, 200, 'a route without it is not redirected')
})

t.test('a client that goes away mid-request on HTTPS is audited (499) like on the main listener', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => { setTimeout(() => res.end('late'), 1500) })
  const { app, tlsPort } = await startTlsGateway(t)
  await createRoute(app, { name: 'slow', path: '/slow', targets: [{ url: upstream.url, weight: 1 }] })
  await new Promise<void>((resolve) => {
    const request = httpsRequest({ host: '127.0.0.1', port: tlsPort, path: '/slow', rejectUnauthorized: false, headers: { 'x-request-id': 'gone-over-tls' } })
    request.on('error', () => resolve())
    request.end()
    setTimeout(() => { request.destroy(); resolve() }, 300)
  })
  await new Promise((resolve) => setTimeout(resolve, 300))
  await app.audit.flush()
  const rows = await app.db.selectFrom('audit_log').selectAll().where('request_id', '=', 'gone-over-tls').execute()
  t.equal(rows.length, 1)
  t.equal(rows[0].status, 499)
})
