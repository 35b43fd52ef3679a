// `npm run bench`: Gatehouse (built dist/, real process) beside a minimal Fastify +
// @fastify/reply-from proxy, both in front of the same local node:http upstream, measured in the
// same run and alternating (a, b, a, b …) so drift of the machine hits both alike.
// Prints req/s, p50/p99 latency and the ratio b/a.  `node bench/run.mjs --help` for the options.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { SignJWT } from 'jose'
import { freePort } from './free-port.mjs'

const HELP = `usage: npm run bench -- [options]
  --duration S      seconds measured per run (default 10)
  --warmup S        seconds of warm-up before each measured run, discarded (default 3)
  --rounds N        rounds of a, b… alternating; medians are reported (default 3)
  --connections N   concurrent connections (default 64)
  --routes LIST     route counts for Gatehouse, comma separated: "10,10000" shows the lookup cost (default 10)
  --profile NAME    what Gatehouse does on the measured route (default bare):
                      bare        routes only (audit, metrics, request id, X-Forwarded-*, Via: always on)
                      rate-limit  a route rate limit that never triggers
                      api-key     api-key auth with a valid key
                      jwt         HS256 JWT auth with a valid token
                      full        rate limit + CORS + a deny filter for another network + api-key
                      audit-off   bare, with request audit rows switched off (what auditing costs)
  --pin             taskset: proxies on core 0, upstream and load generator on core 1
`

const { values: options } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '64' },
    routes: { type: 'string', default: '10' },
    profile: { type: 'string', default: 'bare' },
    pin: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false }
  }
})
if (options.help) {
  console.log(HELP)
  process.exit(0)
}

const PROFILES = ['bare', 'rate-limit', 'api-key', 'jwt', 'full', 'audit-off']
const positive = (name) => {
  const value = Number(options[name])
  if (!Number.isInteger(value) || value < 1) fail(`--${name} must be a whole number ≥ 1, got "${options[name]}"`)
  return value
}
const duration = positive('duration')
const warmup = Number(options.warmup)
if (!Number.isInteger(warmup) || warmup < 0) fail(`--warmup must be a whole number ≥ 0, got "${options.warmup}"`)
const rounds = positive('rounds')
const connections = positive('connections')
const routeCounts = options.routes.split(',').map((count) => {
  const value = Number(count.trim())
  if (!Number.isInteger(value) || value < 1 || value > 100_000) fail(`--routes takes route counts 1–100000, got "${count}"`)
  return value
})
const profile = options.profile
if (!PROFILES.includes(profile)) fail(`--profile must be one of ${PROFILES.join(', ')}, got "${profile}"`)

const root = fileURLToPath(new URL('..', import.meta.url))
const ADMIN_TOKEN = 'bench-admin-token-0123456789'
const JWT_SECRET = 'bench-jwt-secret-0123456789-0123456789'
const REQUEST_PATH = '/api/bench/items/42?page=1'
const children = new Set()
/** Set once measuring is over: from then on children exiting is expected. */
let stopping = false
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-'))

function fail (message) {
  console.error(`bench: ${message}`)
  process.exit(1)
}

process.on('exit', () => {
  for (const child of children) {
    try { process.kill(-child.pid, 'SIGKILL') } catch {}
  }
  rmSync(scratch, { recursive: true, force: true })
})
process.on('SIGINT', () => process.exit(130))
process.on('SIGTERM', () => process.exit(143))

const pinned = options.pin && spawnSync('taskset', ['-V']).status === 0
if (options.pin && !pinned) console.error('bench: taskset not found, running unpinned')
if (pinned) spawnSync('taskset', ['-p', '-c', '1', String(process.pid)], { stdio: 'ignore' })

/** A child in its own process group (killed with its children at exit); output kept for errors. */
function start (name, script, env, core) {
  const command = pinned ? 'taskset' : process.execPath
  const args = pinned ? ['-c', String(core), process.execPath, script] : [script]
  const child = spawn(command, args, { cwd: root, env: { ...process.env, NODE_ENV: 'production', ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  child.output = ''
  child.stdout.on('data', (chunk) => { child.output += chunk })
  child.stderr.on('data', (chunk) => { child.output += chunk })
  child.on('exit', (code, signal) => {
    children.delete(child)
    if (!stopping) fail(`${name} exited (${code ?? signal}) during the run:\n${child.output.slice(-4000)}`)
  })
  children.add(child)
  return child
}

async function waitForHealth (name, url, child) {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url)
      if (response.ok) return
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  fail(`${name} did not answer ${url} within 60 s:\n${child.output.slice(-4000)}`)
}

async function admin (base, method, urlPath, body, why) {
  const response = await fetch(base + urlPath, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await response.text()
  if (!response.ok) {
    fail(`profile "${profile}" needs ${method} ${urlPath} (${why}), which answered ${response.status}: ${text.slice(0, 500)}`)
  }
  return text === '' ? null : JSON.parse(text)
}

/** Routes, consumers and filters for the profile; returns the headers each request carries. */
async function configureGatehouse (base, routeCount, upstreamUrl) {
  const bench = { name: 'bench', path: '/api/bench', targets: [{ url: upstreamUrl, weight: 1 }] }
  const headers = {}
  if (profile === 'rate-limit' || profile === 'full') bench.rateLimit = { max: 1_000_000_000, windowMs: 60_000, by: 'ip' }
  if (profile === 'full') {
    bench.cors = { origins: ['https://app.example'] }
    headers.origin = 'https://app.example'
  }
  if (profile === 'api-key' || profile === 'full') bench.auth = { type: 'api-key', header: 'x-api-key' }
  if (profile === 'jwt') bench.auth = { type: 'jwt', secret: JWT_SECRET, consumerClaim: 'sub' }

  const routes = [bench]
  for (let i = 1; i < routeCount; i++) routes.push({ name: `svc-${i}`, path: `/api/svc-${i}`, targets: [{ url: upstreamUrl, weight: 1 }] })
  // One import instead of thousands of creates: every create recompiles the whole route table.
  await admin(base, 'PUT', '/admin/config', { routes, filters: [], consumers: [] }, `load ${routeCount} routes`)

  if (profile === 'api-key' || profile === 'full' || profile === 'jwt') {
    await admin(base, 'POST', '/admin/consumers', { name: 'bench' }, 'a consumer')
  }
  if (profile === 'api-key' || profile === 'full') {
    const { key } = await admin(base, 'POST', '/admin/consumers/bench/keys', undefined, 'an API key')
    headers['x-api-key'] = key
  }
  if (profile === 'jwt') {
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('bench').setIssuedAt().setExpirationTime('2h')
      .sign(new TextEncoder().encode(JWT_SECRET))
    headers.authorization = `Bearer ${token}`
  }
  if (profile === 'full') {
    await admin(base, 'POST', '/admin/filters', { action: 'deny', ip: '203.0.113.0/24', reason: 'bench: never matches' }, 'a deny filter')
  }
  return headers
}

async function load (url, headers, seconds) {
  return await autocannon({ url, connections, duration: seconds, headers, pipelining: 1 })
}

function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

// --- start everything -----------------------------------------------------------------------
const upstreamPort = await freePort()
const upstream = start('upstream', 'bench/upstream.mjs', { PORT: String(upstreamPort) }, 1)
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`
await waitForHealth('upstream', upstreamUrl, upstream)
const expectedBody = await (await fetch(upstreamUrl + REQUEST_PATH)).text()

const targets = []
{
  const port = await freePort()
  const child = start('minimal proxy', 'bench/minimal-proxy.mjs', { PORT: String(port), UPSTREAM_URL: upstreamUrl }, 0)
  targets.push({ name: 'a: fastify + reply-from', base: `http://127.0.0.1:${port}`, child, headers: {}, runs: [] })
}
for (const routeCount of routeCounts) {
  const port = await freePort()
  const script = profile === 'audit-off' ? 'bench/gatehouse-audit-off.mjs' : 'dist/server.js'
  const child = start(`gatehouse (${routeCount} routes)`, script, {
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: `sqlite:${path.join(scratch, `gatehouse-${routeCount}.db`)}`,
    ADMIN_TOKEN,
    LOG_LEVEL: 'warn',
    WORKERS: '1'
  }, 0)
  targets.push({ name: `b: gatehouse ${profile}, ${routeCount} routes`, base: `http://127.0.0.1:${port}`, child, routeCount, runs: [] })
}

for (const target of targets) {
  // The minimal proxy has no endpoint of its own: it is up when it proxies.
  await waitForHealth(target.name, target.base + (target.routeCount === undefined ? REQUEST_PATH : '/health'), target.child)
  if (target.routeCount !== undefined) target.headers = await configureGatehouse(target.base, target.routeCount, upstreamUrl)
  // Sanity: the proxied answer is the upstream's, byte for byte.
  const response = await fetch(target.base + REQUEST_PATH, { headers: target.headers })
  const body = await response.text()
  if (response.status !== 200 || body !== expectedBody) fail(`${target.name} answered ${response.status} ${body.slice(0, 300)} instead of the upstream's body`)
}

console.log(`bench: profile ${profile}, ${connections} connections, ${rounds} round(s) of ${warmup} s warm-up + ${duration} s, GET ${REQUEST_PATH}${pinned ? ', pinned' : ''}`)
const problems = []
for (let round = 1; round <= rounds; round++) {
  for (const target of targets) {
    const url = target.base + REQUEST_PATH
    if (warmup > 0) await load(url, target.headers, warmup)
    const result = await load(url, target.headers, duration)
    const run = { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx, errors: result.errors + result.timeouts }
    target.runs.push(run)
    if (run.non2xx > 0 || run.errors > 0) problems.push(`${target.name}, round ${round}: ${run.non2xx} non-2xx answers, ${run.errors} errors/timeouts`)
    console.log(`  round ${round}  ${target.name.padEnd(40)} ${run.rps.toFixed(0).padStart(7)} req/s  p50 ${run.p50} ms  p99 ${run.p99} ms`)
  }
}
stopping = true

const baseline = median(targets[0].runs.map((run) => run.rps))
const rows = targets.map((target) => {
  const rps = median(target.runs.map((run) => run.rps))
  return {
    name: target.name,
    rps,
    p50: median(target.runs.map((run) => run.p50)),
    p99: median(target.runs.map((run) => run.p99)),
    ratio: rps / baseline,
    perRound: target.runs.map((run) => Math.round(run.rps))
  }
})
console.log('\n| target | req/s (median) | p50 ms | p99 ms | b/a | req/s per round |')
console.log('|---|---:|---:|---:|---:|---|')
for (const row of rows) {
  console.log(`| ${row.name} | ${row.rps.toFixed(0)} | ${row.p50} | ${row.p99} | ${row.ratio.toFixed(2)} | ${row.perRound.join(', ')} |`)
}
const resultsDir = path.join(root, 'bench', 'results')
mkdirSync(resultsDir, { recursive: true })
const file = path.join(resultsDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${profile}.json`)
writeFileSync(file, JSON.stringify({ profile, connections, duration, warmup, rounds, pinned, node: process.version, rows, runs: targets.map((t) => ({ name: t.name, runs: t.runs })) }, null, 2))
console.log(`\nbench: target b/a ≥ 0.90; results in ${path.relative(root, file)}`)
if (problems.length > 0) fail(`answers were not all 2xx, the numbers above are not valid:\n  ${problems.join('\n  ')}`)
process.exit(0)
