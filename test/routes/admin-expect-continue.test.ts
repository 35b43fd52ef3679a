import t from 'tap'
import { ADMIN_TOKEN, startGateway } from '../helper.js'
import { parseRaw, rawExchange } from '../plugins/proxy-raw.js'

/** Expect: 100-continue on the admin API, over a real socket (app.inject skips Node's HTTP layer). */

const body = JSON.stringify({ name: 'expect', path: '/expect', targets: [{ url: 'http://127.0.0.1:9', weight: 1 }] })
const head = (token: string, length = Buffer.byteLength(body)): string =>
  `POST /admin/routes HTTP/1.1\r\nHost: a.test\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`

t.test('with a valid token, 100 Continue comes first and the body is then read', async (t) => {
  const { port } = await startGateway(t)
  const exchange = await rawExchange(port, head(ADMIN_TOKEN), { then: body })
  t.match(exchange.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 201 Created\r\n/)
  const created = JSON.parse(parseRaw(exchange.text.slice(exchange.text.indexOf('HTTP/1.1 201'))).body)
  t.equal(created.name, 'expect')
})

t.test('with a wrong token, the 401 is the only answer', async (t) => {
  const { port } = await startGateway(t)
  const exchange = await rawExchange(port, head('wrong-token-0123456789'), { timeoutMs: 2000 })
  t.match(exchange.text, /^HTTP\/1\.1 401 Unauthorized\r\n/)
  t.notMatch(exchange.text, /100 Continue/)
})

t.test('with a declared body over the limit, the 413 is the only answer', async (t) => {
  const { port } = await startGateway(t, { env: { BODY_LIMIT: '100' } })
  const exchange = await rawExchange(port, head(ADMIN_TOKEN, 101), { timeoutMs: 2000 })
  t.match(exchange.text, /^HTTP\/1\.1 413 Payload Too Large\r\n/)
  t.notMatch(exchange.text, /100 Continue/)
  t.equal(parseRaw(exchange.text).headers['content-type'], 'application/json; charset=utf-8')
})
