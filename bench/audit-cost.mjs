// What auditing every request costs: the same built Gatehouse (buildApp from --dist, default
// dist/) started twice, with request audit rows on and off (BuildOptions.auditRequests), each
// sent the same fixed number of requests, alternating a, b, a, b … Reports req/s and, less
// sensitive to a busy machine, the gateway process's own CPU time per request (from /proc,
// Linux), and the ratios.
//   npm run build && node bench/audit-cost.mjs [--requests N] [--rounds N] [--connections N] [--dist DIR]
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { freePort } from './free-port.mjs'

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '30000' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    dist: { type: 'string', default: 'dist' }
  }
})
const requests = Number(values.requests)
const rounds = Number(values.rounds)
const connections = Number(values.connections)
const root = fileURLToPath(new URL('..', import.meta.url))
const ADMIN_TOKEN = 'bench-admin-token-0123456789'
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-audit-cost-'))
const children = new Set()
process.on('exit', () => {
  for (const child of children) try { process.kill(-child.pid, 'SIGKILL') } catch {}
  rmSync(scratch, { recursive: true, force: true })
})

function start (script, env) {
  const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), script], { cwd: root, env: { ...process.env, NODE_ENV: 'production', ...env }, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  children.add(child)
  return child
}

async function ready (url) {
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(url)).ok) return } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${url} never answered`)
}

/** utime + stime of a process in ms (Linux /proc; clock ticks are 100 Hz). */
function cpuMs (pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

// One launcher for both, so the two differ in auditRequests only.
const dist = path.resolve(root, values.dist)
const launcher = path.join(scratch, 'launch.mjs')
writeFileSync(launcher, `
import { buildApp } from ${JSON.stringify(pathToFileURL(path.join(dist, 'app.js')).href)}
import { loadConfig } from ${JSON.stringify(pathToFileURL(path.join(dist, 'plugins/config.js')).href)}
const config = loadConfig(process.env)
const app = await buildApp(config, { auditRequests: process.env.BENCH_AUDIT_REQUESTS === '1' })
await app.listen({ port: config.port, host: config.host })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
`)

const upstream = start('bench/upstream.mjs', { PORT: String(await freePort()) })
const upstreamPort = await new Promise((resolve) => upstream.stdout.once('data', (chunk) => resolve(JSON.parse(String(chunk)).port)))
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`

const targets = []
for (const [name, audit] of [['audit on', '1'], ['audit off', '0']]) {
  const port = await freePort()
  const child = start(launcher, {
    BENCH_AUDIT_REQUESTS: audit,
    PORT: String(port), HOST: '127.0.0.1', ADMIN_TOKEN, LOG_LEVEL: 'warn', WORKERS: '1',
    DATABASE_URL: `sqlite:${path.join(scratch, `${name.replace(' ', '-')}.db`)}`
  })
  const base = `http://127.0.0.1:${port}`
  await ready(`${base}/health`)
  const created = await fetch(`${base}/admin/routes`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', path: '/api/bench', targets: [{ url: upstreamUrl, weight: 1 }] })
  })
  if (created.status !== 201) throw new Error(`creating the route on ${name}: ${created.status}`)
  targets.push({ name, base, child, rps: [], cpu: [] })
}

const run = (url, amount) => autocannon({ url, connections, amount, pipelining: 1 })
for (const target of targets) await run(`${target.base}/api/bench/items/42`, Math.min(5000, requests)) // warm-up
for (let round = 1; round <= rounds; round++) {
  for (const target of targets) {
    const before = cpuMs(target.child.pid)
    const result = await run(`${target.base}/api/bench/items/42`, requests)
    // Let the audit writer finish this round's rows: their cost belongs to these requests.
    await new Promise((resolve) => setTimeout(resolve, 300))
    const cpuPerRequestUs = (cpuMs(target.child.pid) - before) * 1000 / result.requests.total
    if (result.non2xx > 0 || result.errors > 0) throw new Error(`${target.name}: ${result.non2xx} non-2xx, ${result.errors} errors`)
    target.rps.push(result.requests.average)
    target.cpu.push(cpuPerRequestUs)
    console.log(`round ${round}  ${target.name.padEnd(9)}  ${result.requests.average.toFixed(0)} req/s  ${cpuPerRequestUs.toFixed(1)} µs CPU/request`)
  }
}
const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]
const [on, off] = targets
console.log(`\nmedian req/s: on ${median(on.rps).toFixed(0)}, off ${median(off.rps).toFixed(0)} → on/off ${(median(on.rps) / median(off.rps)).toFixed(3)}`)
console.log(`median CPU µs/request: on ${median(on.cpu).toFixed(1)}, off ${median(off.cpu).toFixed(1)} → off/on ${(median(off.cpu) / median(on.cpu)).toFixed(3)} (the throughput ratio when CPU-bound)`)
for (const child of children) try { process.kill(-child.pid, 'SIGTERM') } catch {}
await new Promise((resolve) => setTimeout(resolve, 1000))
process.exit(0)
