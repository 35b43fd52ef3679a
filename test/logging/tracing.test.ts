import { createServer, type IncomingMessage } from 'node:http'
import { Writable } from 'node:stream'
import t from 'tap'
import { parseTraceparent } from '../../lib/trace-context.js'
import { adminHeaders, createRoute, httpRequest, rawHttp, startGateway, startUpstream, type TestContext } from '../helper.js'

const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/

interface ReceivedExport { contentType: string | undefined, path: string, body: any }

/** An OTLP/HTTP receiver: a node:http server keeping each POST /v1/traces body. */
async function otlpReceiver (t: TestContext) {
  const received: ReceivedExport[] = []
  const server = createServer((req: IncomingMessage, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => {
      received.push({ contentType: req.headers['content-type'], path: req.url ?? '', body: JSON.parse(body) })
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  const spans = (): any[] => received.flatMap((entry) => entry.body.resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans)))
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, received, spans }
}

async function until (t: TestContext, check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

t.test('traceparent validation: lowercase hex, non-zero ids, version ff refused, version 00 exact', async (t) => {
  t.same(parseTraceparent(VALID), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: true })
  t.equal(parseTraceparent(VALID.replace(/-01$/, '-00'))?.sampled, false)
  t.equal(parseTraceparent(VALID.toUpperCase()), null, 'uppercase')
  t.equal(parseTraceparent('00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'), null, 'uppercase trace id')
  t.equal(parseTraceparent('00-00000000000000000000000000000000-00f067aa0ba902b7-01'), null, 'all-zero trace id')
  t.equal(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'), null, 'all-zero span id')
  t.equal(parseTraceparent(VALID.replace(/^00/, 'ff')), null, 'version ff')
  t.equal(parseTraceparent(`${VALID}-extra`), null, 'version 00 with more fields')
  t.ok(parseTraceparent(`01${VALID.slice(2)}-future`), 'a later version with more fields is read')
  t.equal(parseTraceparent(`${VALID}, ${VALID}`), null, 'two headers joined')
  t.equal(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01'), null, 'short trace id')
  t.equal(parseTraceparent(undefined), null)
  t.equal(parseTraceparent('garbage'), null)
})

t.test('the upstream gets exactly one traceparent: continued, or a new trace; tracestate unchanged; trace id in audit row and access line', async (t) => {
  const upstream = await startUpstream(t)
  const lines: any[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString('utf8').split('\n')) if (text !== '') lines.push(JSON.parse(text))
      callback()
    }
  })
  const { app, url, port } = await startGateway(t, { build: { logger: { level: 'info', stream } } })
  await createRoute(app, { name: 'traced', path: '/traced', targets: [{ url: upstream.url, weight: 1 }] })

  const cases: Array<{ id: string, headers: Record<string, string>, continued: boolean }> = [
    { id: 'valid', headers: { traceparent: VALID, tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7' }, continued: true },
    { id: 'missing', headers: {}, continued: false },
    { id: 'invalid', headers: { traceparent: 'not-a-traceparent' }, continued: false },
    { id: 'uppercase', headers: { traceparent: VALID.toUpperCase() }, continued: false },
    { id: 'all-zero', headers: { traceparent: '00-00000000000000000000000000000000-0000000000000000-01' }, continued: false },
    { id: 'version-ff', headers: { traceparent: VALID.replace(/^00/, 'ff') }, continued: false }
  ]
  for (const { id, headers, continued } of cases) {
    upstream.requests.length = 0
    const answer = await httpRequest(`${url}/traced/x`, { headers: { ...headers, 'x-request-id': `trace-${id}` } })
    t.equal(answer.statusCode, 200, id)
    const sent = upstream.requests[0].rawHeaders.filter((_value, i, all) => i % 2 === 1 && all[i - 1].toLowerCase() === 'traceparent')
    t.equal(sent.length, 1, `${id}: exactly one traceparent upstream`)
    const match = TRACEPARENT.exec(sent[0])
    t.ok(match, `${id}: well-formed ${sent[0]}`)
    if (match === null) continue
    if (continued) {
      t.equal(match[1], '4bf92f3577b34da6a3ce929d0e0e4736', 'the client\'s trace continues')
      t.not(match[2], '00f067aa0ba902b7', 'the gateway\'s span is the parent, not the client\'s')
      t.equal(sent[0].slice(-2), '01', 'sampled flag kept')
      t.equal(upstream.requests[0].headers.tracestate, headers.tracestate, 'tracestate unchanged')
    } else {
      t.not(match[1], '4bf92f3577b34da6a3ce929d0e0e4736', `${id}: a new trace`)
      t.not(match[1], '0'.repeat(32))
    }
    await app.audit.flush()
    const rows = await httpRequest(`${url}/admin/audit/logs?limit=50`, { headers: adminHeaders })
    const row = JSON.parse(rows.body).items.find((item: any) => item.requestId === `trace-${id}`)
    t.equal(row?.traceId, match[1], `${id}: audit row carries the trace id`)
    const line = lines.find((entry) => entry.msg === 'request completed' && entry.reqId === `trace-${id}`)
    t.equal(line?.traceId, match[1], `${id}: access-log line carries the trace id`)
  }

  // Two client traceparent headers (raw: an HTTP client would merge them): invalid, a new trace, one header forwarded.
  upstream.requests.length = 0
  const raw = await rawHttp(port, `GET /traced/two HTTP/1.1\r\nHost: x\r\ntraceparent: ${VALID}\r\ntraceparent: 00-11111111111111111111111111111111-2222222222222222-01\r\nConnection: close\r\n\r\n`)
  t.match(raw, /^HTTP\/1\.1 200/)
  const forwarded = upstream.requests[0].rawHeaders.filter((_value, i, all) => i % 2 === 1 && all[i - 1].toLowerCase() === 'traceparent')
  t.equal(forwarded.length, 1, 'two client headers → one forwarded')
  t.notOk(forwarded[0].includes('4bf92f3577b34da6a3ce929d0e0e4736') || forwarded[0].includes('11111111111111111111111111111111'), 'a new trace starts')
})

t.test('with OTEL_EXPORTER_OTLP_ENDPOINT: server and client spans over OTLP/HTTP JSON, retries counted, parent-based sampling', async (t) => {
  const receiver = await otlpReceiver(t)
  let calls = 0
  const upstream = await startUpstream(t, (_req, res) => { calls++; res.writeHead(200).end('ok') })
  const { app, url } = await startGateway(t, {
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_TRACES_SAMPLER_ARG: '1.0', OTEL_SERVICE_NAME: 'edge' },
    build: { tracing: { exportIntervalMs: 50 } }
  })
  // The first target refuses connections: one retry to the second.
  const { createServer: createNet } = await import('node:net')
  const closed = createNet()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const deadPort = (closed.address() as { port: number }).port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  await createRoute(app, { name: 'spans', path: '/spans', retries: 1, loadBalancing: 'round-robin', targets: [{ url: `http://127.0.0.1:${deadPort}`, weight: 1 }, { url: upstream.url, weight: 1 }] } as never)

  let answer = await httpRequest(`${url}/spans/a`, { headers: { traceparent: VALID } })
  if (calls === 1 && answer.statusCode === 200) {
    // round-robin may have started on the live target: ask again so one request retries.
    answer = await httpRequest(`${url}/spans/b`, { headers: { traceparent: VALID } })
  }
  t.equal(answer.statusCode, 200)
  await until(t, () => receiver.spans().filter((span) => span.kind === 2).length >= 1 && receiver.spans().some((span) => span.kind === 3), 'spans')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(receiver.received[0].path, '/v1/traces')
  t.equal(receiver.received[0].contentType, 'application/json')
  const resource = receiver.received[0].body.resourceSpans[0].resource.attributes
  t.same(resource.find((a: any) => a.key === 'service.name'), { key: 'service.name', value: { stringValue: 'edge' } })

  const spans = receiver.spans()
  const servers = spans.filter((span) => span.kind === 2)
  const retried = servers.find((span) => span.attributes.some((a: any) => a.key === 'gatehouse.retry_count' && a.value.intValue === '1'))
  t.ok(retried, 'a server span with one retry')
  const attrs = Object.fromEntries(retried.attributes.map((a: any) => [a.key, a.value.stringValue ?? a.value.intValue]))
  t.match(attrs, { 'http.request.method': 'GET', 'http.route': 'spans', 'http.response.status_code': '200', 'gatehouse.outcome': 'proxied', 'gatehouse.target': upstream.url })
  t.equal(retried.traceId, '4bf92f3577b34da6a3ce929d0e0e4736')
  t.equal(retried.parentSpanId, '00f067aa0ba902b7', 'the server span\'s parent is the client\'s span')
  t.match(retried.startTimeUnixNano, /^\d{19}$/, 'times are strings of nanoseconds')
  t.ok(BigInt(retried.endTimeUnixNano) >= BigInt(retried.startTimeUnixNano))
  const clients = spans.filter((span) => span.kind === 3 && span.parentSpanId === retried.spanId)
  t.equal(clients.length, 2, 'one client span per attempt')
  const failed = clients.find((span) => span.status.code === 2)
  t.ok(failed, 'the refused attempt is an error span')
  t.ok(failed.attributes.some((a: any) => a.key === 'error.type' && a.value.stringValue === 'ECONNREFUSED'), 'with its error type')
  const ok = clients.find((span) => span.status.code !== 2)
  t.ok(ok.attributes.some((a: any) => a.key === 'http.response.status_code' && a.value.intValue === '200'))
  t.ok(ok.attributes.some((a: any) => a.key === 'url.full' && a.value.stringValue === upstream.url))

  // An unsampled parent is followed: no spans for it, and the upstream gets flag 00.
  const before = receiver.spans().length
  upstream.requests.length = 0
  t.equal((await httpRequest(`${url}/spans/c`, { headers: { traceparent: VALID.replace(/-01$/, '-00') } })).statusCode, 200)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(receiver.spans().length, before, 'unsampled parent: nothing exported')
  const metrics = await httpRequest(`${url}/metrics`, { headers: adminHeaders })
  t.match(metrics.body, /gatehouse_trace_spans_exported_total \d+/)
  t.match(metrics.body, /gatehouse_trace_spans_dropped_total 0/)
})

t.test('ratio 0 samples no new trace; a sampled parent is still followed', async (t) => {
  const receiver = await otlpReceiver(t)
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_TRACES_SAMPLER_ARG: '0' }, build: { tracing: { exportIntervalMs: 50 } } })
  await createRoute(app, { name: 'r', path: '/r', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 5; i++) t.equal((await httpRequest(`${url}/r`)).statusCode, 200)
  t.match(upstream.requests[0].headers.traceparent, /-00$/, 'new trace not sampled: flag 00 upstream')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(receiver.spans().length, 0)
  t.equal((await httpRequest(`${url}/r`, { headers: { traceparent: VALID } })).statusCode, 200)
  await until(t, () => receiver.spans().length >= 2, 'the sampled parent\'s spans')
  t.ok(receiver.spans().every((span) => span.traceId === '4bf92f3577b34da6a3ce929d0e0e4736'))
})

t.test('bad tracing settings are refused at start', async (t) => {
  const { loadConfig } = await import('../../plugins/config.js')
  t.throws(() => loadConfig({ OTEL_TRACES_SAMPLER_ARG: '1.5' }), /OTEL_TRACES_SAMPLER_ARG/)
  t.throws(() => loadConfig({ OTEL_TRACES_SAMPLER_ARG: 'half' }), /OTEL_TRACES_SAMPLER_ARG/)
  t.throws(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }), /OTEL_EXPORTER_OTLP_ENDPOINT/)
  t.equal(loadConfig({}).tracesSamplerRatio, 1)
})
