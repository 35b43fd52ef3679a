// What header rules and a rewrite cost: one Gatehouse process (built dist/) in front of the bench
// upstream, two routes to it — one plain, one with two header rules (a request `set` using
// ${clientIp} and a response `remove`) and a rewrite — measured alternately (plain, transformed,
// plain …) so drift of the machine hits both alike. Prints req/s medians and, steadier on a
// loaded machine, the gateway process's CPU time per request (from /proc): its inverse is the
// throughput of one gateway core.
//   node bench/transforms-cost.mjs [--duration S] [--rounds N] [--connections N]
/* eslint-disable no-template-curly-in-string -- ${clientIp} is the gateway's template variable */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir, loadavg } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { freePort } from './free-port.mjs'

const { values: options } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' }
  }
})
const root = fileURLToPath(new URL('..', import.meta.url))
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-'))
const ADMIN_TOKEN = 'bench-admin-token-0123456789'
const children = []
process.on('exit', () => {
  for (const child of children) { try { process.kill(-child.pid, 'SIGKILL') } catch {} }
  rmSync(scratch, { recursive: true, force: true })
})

function start (script, env) {
  const child = spawn(process.execPath, [script], { cwd: root, env: { ...process.env, NODE_ENV: 'production', ...env }, stdio: 'ignore', detached: true })
  children.push(child)
  return child
}

async function waitFor (url) {
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(url)).ok) return } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${url} did not answer`)
}

const upstreamPort = await freePort()
start('bench/upstream.mjs', { PORT: String(upstreamPort) })
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`
await waitFor(upstreamUrl)
const port = await freePort()
const gateway = start('dist/server.js', { PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: `sqlite:${path.join(scratch, 'g.db')}`, ADMIN_TOKEN, LOG_LEVEL: 'warn', WORKERS: '1' })
const base = `http://127.0.0.1:${port}`
await waitFor(`${base}/health`)

const targets = [{ url: upstreamUrl, weight: 1 }]
const routes = [
  { name: 'plain', path: '/plain', targets },
  {
    name: 'transformed',
    path: '/xf',
    stripPath: true,
    targets,
    requestHeaders: { remove: [], set: { 'x-client': '${clientIp}' }, add: {} },
    responseHeaders: { remove: ['x-powered-by'], set: {}, add: {} },
    rewrite: { from: '/v1/:rest*', to: '/api/bench/:rest*' }
  }
]
const put = await fetch(`${base}/admin/config`, {
  method: 'PUT',
  headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
  body: JSON.stringify({ routes, filters: [], consumers: [] })
})
if (!put.ok) throw new Error(`PUT /admin/config: ${put.status} ${await put.text()}`)

const paths = { plain: '/plain/api/bench/items/42?page=1', transformed: '/xf/v1/items/42?page=1' }
const runs = { plain: [], transformed: [] }
const cpu = { plain: [], transformed: [] }
/** The gateway's user + system CPU time in ms (Linux /proc; clock ticks of 10 ms). */
const cpuMs = () => {
  const fields = readFileSync(`/proc/${gateway.pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}
const connections = Number(options.connections)
const duration = Number(options.duration)
console.log(`transforms-cost: ${connections} connections, ${options.rounds} rounds of 2 s warm-up + ${duration} s, load average ${loadavg().map((n) => n.toFixed(1)).join(' ')}`)
for (let round = 1; round <= Number(options.rounds); round++) {
  for (const name of ['plain', 'transformed']) {
    const url = base + paths[name]
    await autocannon({ url, connections, duration: 2 })
    const cpuBefore = cpuMs()
    const result = await autocannon({ url, connections, duration })
    const cpuPerRequest = (cpuMs() - cpuBefore) * 1000 / result.requests.total
    if (result.non2xx > 0 || result.errors > 0) throw new Error(`${name}: ${result.non2xx} non-2xx, ${result.errors} errors`)
    runs[name].push(result.requests.average)
    cpu[name].push(cpuPerRequest)
    console.log(`  round ${round} ${name.padEnd(12)} ${result.requests.average.toFixed(0).padStart(7)} req/s  p50 ${result.latency.p50} ms  p99 ${result.latency.p99} ms  gateway CPU ${cpuPerRequest.toFixed(1)} µs/request (${(1e6 / cpuPerRequest).toFixed(0)} req/s per core)`)
  }
}
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const plain = median(runs.plain)
const transformed = median(runs.transformed)
const plainCpu = median(cpu.plain)
const transformedCpu = median(cpu.transformed)
console.log(`median: plain ${plain.toFixed(0)} req/s, transformed ${transformed.toFixed(0)} req/s (${((1 - transformed / plain) * 100).toFixed(1)} % fewer)`)
console.log(`median gateway CPU per request: plain ${plainCpu.toFixed(1)} µs, transformed ${transformedCpu.toFixed(1)} µs (${((transformedCpu / plainCpu - 1) * 100).toFixed(1)} % more); load average after ${loadavg().map((n) => n.toFixed(1)).join(' ')}`)
process.exit(0)
