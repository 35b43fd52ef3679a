// What auditing every request costs: the same built Gatehouse (buildApp from --dist, default
// dist/) started twice, with request audit rows on and off (BuildOptions.auditRequests), each
// sent the same fixed number of requests, alternating a, b, a, b … Reports req/s and, less
// sensitive to a busy machine, the gateway process's own CPU time per request (from /proc,
// Linux), and the ratios.
//   npm run build && node bench/audit-cost.mjs [--requests N] [--rounds N] [--connections N] [--dist DIR]
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { createBenchRoute, measureInRounds, median, ready } from './cost-rounds.mjs'
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
  await createBenchRoute(base, ADMIN_TOKEN, upstreamUrl, name)
  targets.push({ name, base, child, rps: [], cpu: [] })
}

// Let the audit writer finish this round's rows: their cost belongs to these requests.
await measureInRounds(targets, { rounds, requests, connections, settleMs: 300 })
const [on, off] = targets
console.log(`\nmedian req/s: on ${median(on.rps).toFixed(0)}, off ${median(off.rps).toFixed(0)} → on/off ${(median(on.rps) / median(off.rps)).toFixed(3)}`)
console.log(`median CPU µs/request: on ${median(on.cpu).toFixed(1)}, off ${median(off.cpu).toFixed(1)} → off/on ${(median(off.cpu) / median(on.cpu)).toFixed(3)} (the throughput ratio when CPU-bound)`)
for (const child of children) try { process.kill(-child.pid, 'SIGTERM') } catch {}
await new Promise((resolve) => setTimeout(resolve, 1000))
process.exit(0)
