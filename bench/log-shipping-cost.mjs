// What log shipping and tracing cost on the proxied path (docs/logging.md "What it costs"): the
// same built Gatehouse started twice — with neither, and with one HTTP log sink plus OTLP span
// export at ratio 1.0 (both receivers are node:http servers in this process, answering 204/200)
// — each sent the same fixed number of requests, alternating. Reports req/s and the gateway
// process's own CPU time per request (from /proc, Linux). Then, in this process (--expose-gc),
// the heap a full sink queue holds: LOG_SINK_QUEUE lines for a sink that is down.
//   npm run build && node --expose-gc bench/log-shipping-cost.mjs [--requests N] [--rounds N] [--connections N] [--queue N] [--profiles neither,sink,otlp,sink+otlp] [--gateway-cpu 0]
//   One core for the gateway, the rest on the other: taskset -c 1 node --expose-gc bench/log-shipping-cost.mjs --gateway-cpu 0
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { createBenchRoute, measureInRounds, median, ready, sendRequests } from './cost-rounds.mjs'
import { freePort } from './free-port.mjs'

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '30000' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    dist: { type: 'string', default: 'dist' },
    queue: { type: 'string', default: '10000' },
    /** Which of neither, sink, otlp, sink+otlp to compare (the first is the reference). */
    profiles: { type: 'string', default: 'neither,sink+otlp' },
    /** Pin each gateway to this CPU (Linux taskset), so its cost is measured on one core. */
    'gateway-cpu': { type: 'string' },
    /** The gateways' LOG_LEVEL: warn (no stdout access log) isolates the shipping; info is the default. */
    'log-level': { type: 'string', default: 'warn' }
  }
})
const requests = Number(values.requests)
const rounds = Number(values.rounds)
const connections = Number(values.connections)
const root = fileURLToPath(new URL('..', import.meta.url))
const ADMIN_TOKEN = 'bench-admin-token-0123456789'
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-log-cost-'))
const children = new Set()
process.on('exit', () => {
  for (const child of children) try { process.kill(-child.pid, 'SIGKILL') } catch {}
  rmSync(scratch, { recursive: true, force: true })
})

function start (script, env, cpu) {
  const node = [process.execPath, ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), script]
  const [command, ...args] = cpu === undefined ? node : ['taskset', '-c', cpu, ...node]
  const child = spawn(command, args, { cwd: root, env: { ...process.env, NODE_ENV: 'production', ...env }, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  children.add(child)
  return child
}

const dist = path.resolve(root, values.dist)
const launcher = path.join(scratch, 'launch.mjs')
writeFileSync(launcher, `
import { buildApp } from ${JSON.stringify(pathToFileURL(path.join(dist, 'app.js')).href)}
import { loadConfig } from ${JSON.stringify(pathToFileURL(path.join(dist, 'plugins/config.js')).href)}
const config = loadConfig(process.env)
const app = await buildApp(config)
await app.listen({ port: config.port, host: config.host })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
`)

/** A receiver that reads each body and answers `status`; counts what it got. */
async function receiver (status) {
  const got = { requests: 0, bytes: 0 }
  const server = createServer((req, res) => {
    got.requests++
    req.on('data', (chunk) => { got.bytes += chunk.length }).on('end', () => res.writeHead(status).end())
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${server.address().port}`, got, server }
}
const sink = await receiver(204)
const otlp = await receiver(200)

const upstream = start('bench/upstream.mjs', { PORT: String(await freePort()) })
const upstreamPort = await new Promise((resolve) => upstream.stdout.once('data', (chunk) => resolve(JSON.parse(String(chunk)).port)))
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`

const targets = []
const profiles = {
  neither: {},
  sink: { LOG_SINKS: `${sink.url}/ingest` },
  otlp: { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER_ARG: '1.0' },
  'sink+otlp': { LOG_SINKS: `${sink.url}/ingest`, OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER_ARG: '1.0' }
}
for (const [name, extra] of Object.entries(profiles).filter(([name]) => values.profiles.split(',').includes(name))) {
  const port = await freePort()
  const child = start(launcher, {
    PORT: String(port), HOST: '127.0.0.1', ADMIN_TOKEN, LOG_LEVEL: values['log-level'], WORKERS: '1',
    DATABASE_URL: `sqlite:${path.join(scratch, `${name.replace('+', '-')}.db`)}`,
    ...extra
  }, values['gateway-cpu'])
  // The stdout access log (LOG_LEVEL=info) is read and thrown away, as a log collector would read it.
  child.stdout.resume()
  const base = `http://127.0.0.1:${port}`
  await ready(`${base}/health`)
  await createBenchRoute(base, ADMIN_TOKEN, upstreamUrl, name)
  targets.push({ name, base, child, rps: [], cpu: [] })
}

// Let the last batches (lines, spans, audit rows) leave: their cost belongs to these requests.
await measureInRounds(targets, { rounds, requests, connections, settleMs: 1500 })
const [reference, ...others] = targets
console.log('')
for (const target of targets) console.log(`median ${target.name.padEnd(9)}  ${median(target.rps).toFixed(0)} req/s  ${median(target.cpu).toFixed(1)} µs CPU/request`)
for (const target of others) console.log(`${target.name} vs ${reference.name}: CPU per request +${((median(target.cpu) / median(reference.cpu) - 1) * 100).toFixed(1)} %`)
console.log(`received: sink ${sink.got.requests} batches / ${(sink.got.bytes / 1e6).toFixed(1)} MB, otlp ${otlp.got.requests} batches / ${(otlp.got.bytes / 1e6).toFixed(1)} MB`)
for (const child of children) try { process.kill(-child.pid, 'SIGTERM') } catch {}
sink.server.close()
otlp.server.close()

// The heap of a full queue: a sink nobody answers, LOG_SINK_QUEUE lines queued.
if (typeof globalThis.gc === 'function') {
  const { buildApp } = await import(pathToFileURL(path.join(dist, 'app.js')).href)
  const { loadConfig } = await import(pathToFileURL(path.join(dist, 'plugins/config.js')).href)
  const dead = await freePort()
  const queue = Number(values.queue)
  const app = await buildApp(loadConfig({ DATABASE_URL: 'sqlite::memory:', ADMIN_TOKEN, LOG_LEVEL: 'silent', LOG_SINKS: `http://127.0.0.1:${dead}/x`, LOG_SINK_QUEUE: String(queue) }), { auditRequests: false })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${app.server.address().port}`
  await createBenchRoute(base, ADMIN_TOKEN, upstreamUrl, 'the queue gateway')
  await sendRequests(`${base}/api/bench/items/42`, 2000, connections)
  await new Promise((resolve) => setTimeout(resolve, 200))
  // The warm-up's lines are queued too: measure from an empty-ish queue by counting the difference.
  globalThis.gc()
  const queuedBefore = app.logShipping.status()[0].queued
  const heapBefore = process.memoryUsage().heapUsed
  await sendRequests(`${base}/api/bench/items/42`, queue + 2000, connections)
  await new Promise((resolve) => setTimeout(resolve, 200))
  globalThis.gc()
  const heapAfter = process.memoryUsage().heapUsed
  const [status] = app.logShipping.status()
  const added = status.queued - queuedBefore
  console.log(`\nfull queue: ${status.queued} lines queued (bound ${queue}), ${status.dropped} dropped; heap +${((heapAfter - heapBefore) / 1e6).toFixed(2)} MB for ${added} more lines → ${((heapAfter - heapBefore) / Math.max(1, added)).toFixed(0)} B/line; full queue ≈ ${((heapAfter - heapBefore) / Math.max(1, added) * queue / 1e6).toFixed(1)} MB`)
  await app.close()
}
for (const child of children) try { process.kill(-child.pid, 'SIGTERM') } catch {}
await new Promise((resolve) => setTimeout(resolve, 500))
process.exit(0)
