import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { hostname } from 'node:os'
import t from 'tap'
import { adminHeaders, createRoute, httpRequest, startGateway, startUpstream, type TestContext } from '../helper.js'

interface Received { method: string, path: string, headers: IncomingMessage['headers'], body: string }

/** A node:http receiver keeping every request; `answer` decides the response. */
async function receiver (t: TestContext, answer: (req: Received, res: ServerResponse) => void = (_req, res) => { res.writeHead(204).end() }) {
  const received: Received[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => {
      const entry = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body }
      received.push(entry)
      answer(entry, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { port: (server.address() as { port: number }).port, received }
}

async function deadPort (): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

async function until (check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const fast = { maxWaitMs: 50, firstRetryMs: 50, maxRetryDelayMs: 200 }

async function status (url: string): Promise<any[]> {
  return JSON.parse((await httpRequest(`${url}/admin/status`, { headers: adminHeaders })).body).logSinks
}

t.test('Loki push, Elasticsearch bulk (items checked one by one) and an HTTP JSON array, each in its own wire format; admin rows shipped too', async (t) => {
  const loki = await receiver(t)
  let bulkCalls = 0
  const elastic = await receiver(t, (req, res) => {
    bulkCalls++
    const docs = req.body.split('\n').filter((_line, i) => i % 2 === 1)
    // First bulk: item 0 refused for good (400), item 1 told to come back (429), the rest created.
    const items = docs.map((_doc, i) => ({ create: bulkCalls === 1 && i === 0 ? { status: 400, error: { type: 'mapper_parsing_exception', reason: 'failed to parse' } } : bulkCalls === 1 && i === 1 ? { status: 429, error: { type: 'es_rejected_execution_exception' } } : { status: 201 } }))
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: items.some((item) => item.create.status >= 300), items }))
  })
  const http = await receiver(t)
  const upstream = await startUpstream(t)
  const sinks = [
    `loki+http://127.0.0.1:${loki.port}`,
    `elasticsearch+http://elastic:s3cret-pw@127.0.0.1:${elastic.port}/gatehouse-access`,
    `http://collector:hunter2@127.0.0.1:${http.port}/ingest?tag=gw`
  ]
  const { app, url } = await startGateway(t, { env: { LOG_SINKS: sinks.join(',') }, build: { logShipping: fast } })
  await createRoute(app, { name: 'shipped', path: '/shipped', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 3; i++) t.equal((await httpRequest(`${url}/shipped/${i}`, { headers: { 'x-request-id': `ship-${i}` } })).statusCode, 200)

  await until(() => http.received.flatMap((r) => JSON.parse(r.body)).filter((line: any) => String(line.reqId).startsWith('ship-')).length === 3, 'the HTTP sink lines')
  await until(() => loki.received.some((r) => r.body.includes('ship-2')), 'Loki lines')
  await until(() => bulkCalls >= 2, 'the bulk retry')

  // Loki
  const push = loki.received.map((r) => ({ ...r, json: JSON.parse(r.body) }))
  t.ok(push.every((r) => r.method === 'POST' && r.path === '/loki/api/v1/push' && r.headers['content-type'] === 'application/json'))
  const streams = push.flatMap((r) => r.json.streams)
  const requestStreams = streams.filter((s: any) => s.stream.event_type === 'request')
  t.same(requestStreams[0].stream, { job: 'gatehouse', instance: hostname(), event_type: 'request' }, 'three low-cardinality labels')
  const values = requestStreams.flatMap((s: any) => s.values)
  for (const value of values) {
    t.equal(value.length, 2)
    t.match(value[0], /^\d{19}$/, 'timestamp: nanoseconds as a string')
  }
  const line = JSON.parse(values.find((v: any) => v[1].includes('"ship-0"'))[1])
  t.match(line, { reqId: 'ship-0', route: 'shipped', method: 'GET', status: 200, outcome: 'proxied', traceId: /^[0-9a-f]{32}$/, consumer: null, bytesIn: 0, bytesOut: Number, durationMs: Number, msg: 'request completed' })
  const adminStream = streams.find((s: any) => s.stream.event_type === 'admin')
  t.ok(adminStream, 'the route creation\'s admin audit row is shipped in its own stream')
  t.match(JSON.parse(adminStream.values[0][1]), { event_type: 'admin', outcome: 'admin', detail: { action: 'create', resource: 'route' } })

  // Elasticsearch
  const first = elastic.received[0]
  t.equal(first.path, '/gatehouse-access/_bulk')
  t.equal(first.headers['content-type'], 'application/x-ndjson')
  t.equal(first.headers.authorization, `Basic ${Buffer.from('elastic:s3cret-pw').toString('base64')}`)
  t.ok(first.body.endsWith('\n'), 'NDJSON ends with a newline')
  const rows = first.body.slice(0, -1).split('\n')
  t.equal(rows.length % 2, 0)
  for (let i = 0; i < rows.length; i += 2) {
    t.equal(rows[i], '{"create":{}}')
    t.match(JSON.parse(rows[i + 1]), { '@timestamp': /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/ })
  }
  const retriedDocs = elastic.received[1].body.split('\n').filter((_l, i) => i % 2 === 1)
  t.equal(retriedDocs.length, 1, 'only the 429 item is sent again')
  t.equal(JSON.parse(retriedDocs[0]).reqId, JSON.parse(rows[3]).reqId)

  // HTTP
  t.equal(http.received[0].path, '/ingest?tag=gw')
  t.equal(http.received[0].headers['content-type'], 'application/json')
  t.equal(http.received[0].headers.authorization, `Basic ${Buffer.from('collector:hunter2').toString('base64')}`)
  t.ok(Array.isArray(JSON.parse(http.received[0].body)))

  // status and metrics, passwords never shown
  const sinkStatus = await status(url)
  t.same(sinkStatus.map((s) => s.sink), [
    `loki+http://127.0.0.1:${loki.port}`,
    `elasticsearch+http://elastic:***@127.0.0.1:${elastic.port}/gatehouse-access`,
    `http://collector:***@127.0.0.1:${http.port}/ingest?tag=gw`
  ])
  const es = sinkStatus[1]
  t.equal(es.dropped, 1, 'the 400 item counted as dropped')
  t.equal(es.retries, 1)
  t.match(es.lastError, /item status (400|429)/)
  t.ok(es.queued <= 4, `nothing left but the newest lines (the status calls' own, and what arrived during the retry's backoff): ${es.queued}`)
  const metrics = (await httpRequest(`${url}/metrics`, { headers: adminHeaders })).body
  t.notOk(metrics.includes('s3cret-pw') || metrics.includes('hunter2'), 'no password in /metrics')
  t.notOk(JSON.stringify(sinkStatus).includes('s3cret-pw') || JSON.stringify(sinkStatus).includes('hunter2'), 'no password in /admin/status')
  t.match(metrics, new RegExp(`gatehouse_log_sink_dropped_total\\{sink="elasticsearch\\+http://elastic:\\*\\*\\*@127.0.0.1:${elastic.port}/gatehouse-access"\\} 1`))
  t.match(metrics, /gatehouse_log_sink_retries_total\{sink="elasticsearch[^"]*"\} 1/)
  t.match(metrics, /gatehouse_log_sink_sent_total\{sink="loki\+http:[^"]*"\} [1-9]/)
  t.match(metrics, /gatehouse_log_sink_queue_depth\{sink="http:[^"]*"\} \d+/)
})

t.test('a dead sink: bounded queue, drops counted, proxying unaffected', async (t) => {
  const upstream = await startUpstream(t)
  const port = await deadPort()
  const baseline = await startGateway(t)
  const { app, url } = await startGateway(t, { env: { LOG_SINKS: `http://127.0.0.1:${port}/logs`, LOG_SINK_QUEUE: '50' }, build: { logShipping: fast } })
  for (const gateway of [baseline.app, app]) await createRoute(gateway, { name: 'd', path: '/d', targets: [{ url: upstream.url, weight: 1 }] })

  const timings = async (base: string): Promise<number[]> => {
    const took: number[] = []
    for (let i = 0; i < 300; i++) {
      const started = performance.now()
      t.equal((await httpRequest(`${base}/d/${i}`)).statusCode, 200)
      took.push(performance.now() - started)
    }
    return took.sort((a, b) => a - b)
  }
  const without = await timings(baseline.url)
  const withDead = await timings(url)
  const p99 = (sorted: number[]): number => sorted[Math.floor(sorted.length * 0.99)]
  t.comment(`p99 without a sink ${p99(without).toFixed(2)} ms, with a dead sink ${p99(withDead).toFixed(2)} ms (noisy machine)`)
  t.ok(p99(withDead) < p99(without) * 3 + 20, 'p99 within noise of the gateway without a sink')

  const [dead] = await status(url)
  t.ok(dead.queued <= 50, `queue bounded: ${dead.queued}`)
  t.ok(dead.dropped >= 250, `drops counted: ${dead.dropped}`)
  t.equal(dead.sent, 0)
  t.match(dead.lastError, /ECONNREFUSED|connect/)
  await until(() => true, '')
})

t.test('a slow sink never slows proxied requests; its lines arrive', async (t) => {
  const upstream = await startUpstream(t)
  const slow = await receiver(t, (_req, res) => { setTimeout(() => res.writeHead(204).end(), 1500) })
  const { app, url } = await startGateway(t, { env: { LOG_SINKS: `http://127.0.0.1:${slow.port}/slow` }, build: { logShipping: fast } })
  await createRoute(app, { name: 's', path: '/s', targets: [{ url: upstream.url, weight: 1 }] })
  const started = performance.now()
  for (let i = 0; i < 20; i++) {
    t.equal((await httpRequest(`${url}/s/${i}`)).statusCode, 200)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.ok(performance.now() - started < 1500, 'twenty requests answered while the first batch is still in flight')
  await until(() => slow.received.flatMap((r) => JSON.parse(r.body)).length >= 20, 'all lines', 10_000)
  t.equal((await status(url))[0].dropped, 0)
})

t.test('shutdown sends a full queue until the grace period is over', async (t) => {
  const upstream = await startUpstream(t)
  let healthy = false
  const accepted: string[] = []
  const sink = await receiver(t, (req, res) => {
    if (healthy) accepted.push(req.body)
    res.writeHead(healthy ? 204 : 503).end()
  })
  const { app, url } = await startGateway(t, { env: { LOG_SINKS: `http://127.0.0.1:${sink.port}/in`, SHUTDOWN_GRACE_MS: '5000' }, build: { logShipping: { ...fast, maxWaitMs: 60_000 } } })
  await createRoute(app, { name: 'q', path: '/q', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 30; i++) await httpRequest(`${url}/q/${i}`, { headers: { 'x-request-id': `drain-${i}` } })
  t.ok((await status(url))[0].queued >= 30, 'nothing sent yet: the batch wait is a minute')
  setTimeout(() => { healthy = true }, 600)
  const closing = performance.now()
  await app.close()
  t.ok(sink.received.length > accepted.length, 'refused (503) while the sink was down')
  const delivered = accepted.flatMap((body) => JSON.parse(body))
  t.same(delivered.map((line: any) => String(line.reqId)).filter((id: string) => id.startsWith('drain-')), Array.from({ length: 30 }, (_v, i) => `drain-${i}`), 'every line delivered once the sink recovered')
  t.ok(performance.now() - closing < 5000, 'within the grace period')
})

t.test('shutdown gives up at the grace deadline and counts what was left', async (t) => {
  const upstream = await startUpstream(t)
  const sink = await receiver(t, (_req, res) => { res.writeHead(503).end() })
  const { app, url } = await startGateway(t, { env: { LOG_SINKS: `http://127.0.0.1:${sink.port}/in`, SHUTDOWN_GRACE_MS: '300' }, build: { logShipping: { ...fast, maxWaitMs: 60_000 } } })
  await createRoute(app, { name: 'q', path: '/q', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 10; i++) await httpRequest(`${url}/q/${i}`)
  const lines: string[] = []
  const original = app.log.warn.bind(app.log)
  app.log.warn = ((obj: unknown, msg?: string) => { lines.push(JSON.stringify({ obj, msg })); original(obj as object, msg) }) as typeof app.log.warn
  const closing = performance.now()
  await app.close()
  const took = performance.now() - closing
  t.ok(took < 3000, `close returned after ${took.toFixed(0)} ms (grace 300 ms, at least 1 s for the sinks)`)
  t.ok(sink.received.length >= 2, 'retried while the grace lasted')
  t.ok(lines.some((line) => line.includes('dropped')), 'the drops are logged')
})

t.test('a 4xx refuses a batch for good (counted, not retried); a 5xx is retried until the retry window is over, then dropped', async (t) => {
  const upstream = await startUpstream(t)
  const refusing = await receiver(t, (_req, res) => { res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"bad"}') })
  const failing = await receiver(t, (_req, res) => { res.writeHead(503).end() })
  const { app, url } = await startGateway(t, {
    env: { LOG_SINKS: `http://127.0.0.1:${refusing.port}/a,http://127.0.0.1:${failing.port}/b` },
    build: { logShipping: { ...fast, retryWindowMs: 400 } }
  })
  await createRoute(app, { name: 'r', path: '/r', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 5; i++) await httpRequest(`${url}/r/${i}`)
  await until(() => refusing.received.length >= 1 && failing.received.length >= 3, 'attempts')
  await new Promise((resolve) => setTimeout(resolve, 800))
  const [refused, failed] = app.logShipping.status()
  t.equal(refused.retries, 0, '400: never retried')
  t.ok(refused.dropped >= 5, `400: the batch counted as dropped (${refused.dropped})`)
  t.equal(refused.lastError, 'HTTP 400: {"error":"bad"}')
  t.ok(failed.retries >= 2, `503: retried (${failed.retries})`)
  t.ok(failed.dropped >= 5, `503: dropped once the retry window was over (${failed.dropped})`)
  t.equal(failed.sent, 0)
  t.equal(failed.lastError, 'HTTP 503')
})
