// `node bench/cluster-rate-limit.mjs [--root DIR …]`: what host-wide rate limits cost with WORKERS=2
// and no Redis (docs/policies.md "Several worker processes (`WORKERS` > 1) without Redis"). Runs the gateway from the
// sources in each DIR (default: this checkout; add `--root` an export of another commit, e.g.
// `git archive main | tar -x -C /tmp/before`, to compare), all at once, measured in turn so
// that drift of the machine hits each alike, and measures with autocannon:
//   - throughput and latency of a route without a limit and of one with a limit that never
//     triggers (so every request is counted), alternating, `--rounds` times;
//   - admission: `--admission-runs` bursts of 20 parallel requests on new connections at max 5,
//     the counter reset between bursts; prints how many were admitted each time.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { request } from 'undici'
import { freePort } from './free-port.mjs'

const { values: options } = parseArgs({
  options: {
    root: { type: 'string', multiple: true, default: [fileURLToPath(new URL('..', import.meta.url))] },
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    workers: { type: 'string', default: '2' },
    'admission-runs': { type: 'string', default: '20' }
  }
})
const TOKEN = 'bench-admin-token-0123456789'
const admin = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-cluster-bench-'))
const children = []

function start (command, args, env, cwd) {
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  children.push(child)
  return child
}
function stopAll () {
  for (const child of children) { try { process.kill(-child.pid, 'SIGKILL') } catch {} }
  rmSync(scratch, { recursive: true, force: true })
}
process.on('exit', stopAll)

const upstreamPort = await freePort()
start(process.execPath, [fileURLToPath(new URL('upstream.mjs', import.meta.url))], { PORT: String(upstreamPort) })
async function startGateway (root) {
  const port = await freePort()
  const dataDir = mkdtempSync(path.join(scratch, 'db-'))
  start(process.execPath, ['--import', 'tsx', path.join(root, 'server.ts')], {
    PORT: String(port), HOST: '127.0.0.1', WORKERS: options.workers, ADMIN_TOKEN: TOKEN, LOG_LEVEL: 'warn',
    DATABASE_URL: `sqlite:${path.join(dataDir, 'gatehouse.db')}`, REDIS_URL: ''
  }, root)
  const base = `http://127.0.0.1:${port}`
  for (const deadline = Date.now() + 60_000; ;) {
    const ok = await request(`${base}/health`).then(async (r) => { await r.body.dump(); return r.statusCode === 200 }, () => false)
    if (ok) break
    if (Date.now() > deadline) throw new Error('gateway not healthy within 60 s')
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  async function createRoute (name, rateLimit) {
    const response = await request(`${base}/admin/routes`, {
      method: 'POST', headers: admin,
      body: JSON.stringify({ name, path: `/${name}`, targets: [{ url: `http://127.0.0.1:${upstreamPort}`, weight: 1 }], rateLimit })
    })
    const body = await response.body.json()
    if (response.statusCode !== 201) throw new Error(`route ${name}: ${response.statusCode} ${JSON.stringify(body)}`)
  }
  await createRoute('open', null)
  await createRoute('limited', { max: 1_000_000_000, windowMs: 60_000, by: 'ip' })
  await createRoute('five', { max: 5, windowMs: 60_000, by: 'ip' })
  return base
}
const roots = options.root.map((root) => path.resolve(root))
const bases = []
for (const root of roots) bases.push(await startGateway(root))
// Every worker loads the routes on its configuration poll.
await new Promise((resolve) => setTimeout(resolve, 3000))

async function measure (base, pathName, seconds) {
  const result = await autocannon({ url: `${base}${pathName}`, connections: Number(options.connections), duration: seconds })
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx }
}
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

const results = roots.map(() => ({ open: [], limited: [] }))
for (let round = 0; round < Number(options.rounds); round++) {
  for (const [i, base] of bases.entries()) {
    for (const name of ['open', 'limited']) {
      if (Number(options.warmup) > 0) await measure(base, `/${name}/x`, Number(options.warmup))
      const result = await measure(base, `/${name}/x`, Number(options.duration))
      results[i][name].push(result)
      console.log(`round ${round + 1} ${roots[i]} ${name.padEnd(8)} ${Math.round(result.rps)} req/s  p50 ${result.p50} ms  p99 ${result.p99} ms  non-2xx ${result.non2xx}`)
    }
  }
}

for (const [i, base] of bases.entries()) {
  console.log(`— ${roots[i]}`)
  for (const name of ['open', 'limited']) {
    const rows = results[i][name]
    console.log(`median ${name.padEnd(8)} ${Math.round(median(rows.map((r) => r.rps)))} req/s  p50 ${median(rows.map((r) => r.p50))} ms  p99 ${median(rows.map((r) => r.p99))} ms`)
  }
  const admitted = []
  for (let run = 0; run < Number(options['admission-runs']); run++) {
    const reset = await request(`${base}/admin/rate-limits/127.0.0.1`, { method: 'DELETE', headers: { authorization: admin.authorization } })
    await reset.body.dump()
    const statuses = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const response = await request(`${base}/five/${i}`, { reset: true })
      await response.body.dump()
      return response.statusCode
    }))
    admitted.push(statuses.filter((status) => status === 200).length)
  }
  console.log(`admission at max 5, 20 parallel requests on new connections, ${admitted.length} runs (reset between): admitted ${admitted.join(' ')}`)
}
process.exit(0)
