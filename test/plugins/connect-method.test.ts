import t from 'tap'
import { adminHeaders, httpRequest, startGateway } from '../helper.js'
import { parseRaw, rawExchange } from './proxy-raw.js'

t.test('CONNECT on the main listener is answered 405 JSON with Allow, the connection closed, and audited', async (t) => {
  const { url, port } = await startGateway(t)
  const exchange = await rawExchange(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: drill/1\r\n\r\n', { timeoutMs: 2000 })
  t.equal(exchange.closedByServer, true)
  const response = parseRaw(exchange.text)
  t.equal(response.statusCode, 405)
  t.equal(response.headers.allow, 'DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT')
  t.equal(response.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(response.headers.connection, 'close')
  const body = JSON.parse(response.body)
  t.same(body, {
    statusCode: 405,
    error: 'Method Not Allowed',
    message: 'CONNECT is not supported here: this listener is not a forward proxy',
    requestId: response.headers['x-request-id']
  })

  // The audit writer flushes every few ms.
  let rows: Array<Record<string, unknown>> = []
  for (let i = 0; i < 40 && rows.length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    rows = (await httpRequest(`${url}/admin/audit/logs?eventType=request&status=405`, { headers: adminHeaders })).json().items
  }
  t.equal(rows.length, 1)
  t.match(rows[0], {
    requestId: body.requestId,
    method: 'CONNECT',
    path: 'example.com:443',
    status: 405,
    outcome: 'no_route',
    clientIp: '127.0.0.1',
    userAgent: 'drill/1',
    detail: 'CONNECT is not supported here: this listener is not a forward proxy'
  })
  t.equal((await httpRequest(`${url}/health`)).statusCode, 200, 'the gateway keeps serving')
})
