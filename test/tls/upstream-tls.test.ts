import { createServer } from 'node:https'
import t from 'tap'
import { adminHeaders, createRoute, httpRequest, startGateway, type TestContext } from '../helper.js'
import { makeCertificate, type TestCertificate } from '../tls-helper.js'

/** https targets are verified; route field upstreamTls {verify, ca, serverName} (docs/tls.md "Upstream TLS"). */

async function startHttpsUpstream (t: TestContext, certificate: TestCertificate): Promise<string> {
  const server = createServer({ cert: certificate.cert, key: certificate.key }, (req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ url: req.url, servername: (req.socket as { servername?: string }).servername ?? null }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `https://127.0.0.1:${(server.address() as { port: number }).port}`
}

t.test('a self-signed upstream is refused (502 naming why) unless the route trusts it', async (t) => {
  const selfSigned = makeCertificate(t, { cn: '127.0.0.1' })
  const url = await startHttpsUpstream(t, selfSigned)
  const gateway = await startGateway(t)
  await createRoute(gateway.app, { name: 'tls', path: '/tls', targets: [{ url, weight: 1 }] })
  const refused = await httpRequest(`${gateway.url}/tls/a`)
  t.equal(refused.statusCode, 502)
  t.match(refused.json().message, /upstream TLS verification failed: (DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)/)

  // Trusting it as a CA: the next request uses a pool with the new settings.
  const patched = await gateway.app.inject({ method: 'PATCH', url: '/admin/routes/tls', headers: adminHeaders, payload: { upstreamTls: { verify: true, ca: selfSigned.cert, serverName: null } } })
  t.equal(patched.statusCode, 200, patched.body)
  const trusted = await httpRequest(`${gateway.url}/tls/a`)
  t.equal(trusted.statusCode, 200, trusted.body)
  t.equal(trusted.json().url, '/tls/a')

  const back = await gateway.app.inject({ method: 'PATCH', url: '/admin/routes/tls', headers: adminHeaders, payload: { upstreamTls: null } })
  t.equal(back.statusCode, 200)
  t.equal((await httpRequest(`${gateway.url}/tls/a`)).statusCode, 502, 'back to the system CAs on the next request')

  await gateway.app.inject({ method: 'PATCH', url: '/admin/routes/tls', headers: adminHeaders, payload: { upstreamTls: { verify: false } } })
  t.equal((await httpRequest(`${gateway.url}/tls/a`)).statusCode, 200, 'verify: false')
})

t.test('a private CA in upstreamTls.ca; serverName is sent as SNI and verified', async (t) => {
  const ca = makeCertificate(t, { cn: 'Gatehouse Test CA', isCa: true })
  const leaf = makeCertificate(t, { cn: 'internal.example', names: ['127.0.0.1'], ca })
  const url = await startHttpsUpstream(t, leaf)
  const gateway = await startGateway(t)
  await createRoute(gateway.app, { name: 'private', path: '/private', targets: [{ url, weight: 1 }], upstreamTls: { verify: true, ca: ca.cert, serverName: null } })
  const ok = await httpRequest(`${gateway.url}/private`)
  t.equal(ok.statusCode, 200, ok.body)

  await gateway.app.inject({ method: 'PATCH', url: '/admin/routes/private', headers: adminHeaders, payload: { upstreamTls: { verify: true, ca: ca.cert, serverName: 'internal.example' } } })
  const named = await httpRequest(`${gateway.url}/private`)
  t.equal(named.statusCode, 200, named.body)
  t.equal(named.json().servername, 'internal.example', 'SNI sent to the upstream')

  await gateway.app.inject({ method: 'PATCH', url: '/admin/routes/private', headers: adminHeaders, payload: { upstreamTls: { verify: true, ca: ca.cert, serverName: 'other.example' } } })
  const wrongName = await httpRequest(`${gateway.url}/private`)
  t.equal(wrongName.statusCode, 502)
  t.match(wrongName.json().message, /upstream TLS verification failed: ERR_TLS_CERT_ALTNAME_INVALID/)

  const other = makeCertificate(t, { cn: 'Another CA', isCa: true })
  await gateway.app.inject({ method: 'PATCH', url: '/admin/routes/private', headers: adminHeaders, payload: { upstreamTls: { verify: true, ca: other.cert, serverName: null } } })
  const wrongCa = await httpRequest(`${gateway.url}/private`)
  t.equal(wrongCa.statusCode, 502)
  t.match(wrongCa.json().message, /upstream TLS verification failed/)
})

t.test('upstreamTls is validated', async (t) => {
  const gateway = await startGateway(t)
  const post = (upstreamTls: unknown) => gateway.app.inject({ method: 'POST', url: '/admin/routes', headers: adminHeaders, payload: { name: 'x', path: '/x', targets: [{ url: 'https://127.0.0.1:9' }], upstreamTls } })
  const notPem = await post({ verify: true, ca: 'hello', serverName: null })
  t.equal(notPem.statusCode, 400)
  t.match(notPem.json().message, /upstreamTls\/ca/)
  const brokenPem = await post({ verify: true, ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----', serverName: null })
  t.equal(brokenPem.statusCode, 400)
  t.match(brokenPem.json().message, /upstreamTls\/ca is not a PEM certificate/)
  t.equal((await post({ verify: 'yes' })).statusCode, 400)
  t.equal((await post({ serverName: 'bad name' })).statusCode, 400)
  t.equal((await post({ other: 1 })).statusCode, 400)
})
