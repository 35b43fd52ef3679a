// The response cache (docs/cache.md), measured on the built gateway (dist/, in this process):
//  1. throughput of a cached route (every request a HIT) vs the same route uncached (every
//     request proxied), alternating rounds; the upstream's request count shows hits never reach it;
//  2. memory: N small entries stored, heap growth per entry vs the bytes the store counts;
//  3. collapsing: C concurrent misses for one key against a slow upstream → upstream requests;
//  4. with REDIS_URL set (e.g. redis://127.0.0.1:6379): HIT latency of the Redis store vs memory.
//   npm run build && node --expose-gc bench/cache.mjs [--duration 5] [--rounds 3] [--entries 20000] [--concurrent 200]
import { createServer } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { request } from 'undici'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    entries: { type: 'string', default: '20000' },
    concurrent: { type: 'string', default: '200' },
    connections: { type: 'string', default: '32' }
  }
})
const { buildApp } = await import('../dist/app.js')
const { loadConfig } = await import('../dist/plugins/config.js')
const ADMIN_TOKEN = 'bench-admin-token-0123456789'
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-cache-bench-'))
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }))

let upstreamRequests = 0
let upstreamDelayMs = 0
const body = Buffer.from(JSON.stringify({ ok: true, service: 'bench-upstream', items: [1, 2, 3], note: 'eighty-nine bytes' }))
const upstream = createServer((req, res) => {
  upstreamRequests++
  const answer = () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body) }
  if (upstreamDelayMs > 0) setTimeout(answer, upstreamDelayMs)
  else answer()
})
upstream.keepAliveTimeout = 120_000
await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve))
const target = `http://127.0.0.1:${upstream.address().port}`

const redisUrl = process.env.REDIS_URL
// A generous Redis timeout: on a loaded machine the default 100 ms trips the breaker and the Redis
// route would measure misses instead of hits (each run reports its share of HITs).
const config = loadConfig({ DATABASE_URL: `sqlite:${path.join(scratch, 'gh.db')}`, ADMIN_TOKEN, LOG_LEVEL: 'warn', REDIS_TIMEOUT_MS: '2000', ...(redisUrl === undefined ? {} : { REDIS_URL: redisUrl }) })
const app = await buildApp(config, { configSnapshotFile: null, auditRequests: false, redisKeyPrefix: `gatehouse-bench-${process.pid}:` })
await app.listen({ port: 0, host: '127.0.0.1' })
const gateway = `http://127.0.0.1:${app.server.address().port}`
const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }
async function route (spec) {
  const response = await app.inject({ method: 'POST', url: '/admin/routes', headers: admin, payload: { targets: [{ url: target, weight: 1 }], ...spec } })
  if (response.statusCode !== 201) throw new Error(response.body)
}
await route({ name: 'cached', path: '/cached', cache: { ttlSeconds: 3600, maxBodyBytes: 1_048_576 } })
await route({ name: 'proxied', path: '/proxied' })
if (redisUrl !== undefined) await route({ name: 'redis', path: '/redis', cache: { ttlSeconds: 3600, store: 'redis' } })

async function load (url) {
  const result = await autocannon({ url, connections: Number(values.connections), duration: Number(values.duration) })
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx, total: result.requests.total }
}

const loadavg = (await import('node:os')).loadavg().map((n) => n.toFixed(1)).join(' ')
console.log(`# response cache bench — node ${process.version}, load average ${loadavg} (shared machine: noisy)`)

// 1. HIT vs proxied MISS.
await request(`${gateway}/cached/x`).then((r) => r.body.dump())
const rows = []
for (let round = 0; round < Number(values.rounds); round++) {
  const before = upstreamRequests
  const hit = await load(`${gateway}/cached/x`)
  const hitUpstream = upstreamRequests - before
  const miss = await load(`${gateway}/proxied/x`)
  // Requests autocannon abandoned at the end of the run may still reach the upstream: let them land.
  await new Promise((resolve) => setTimeout(resolve, 1000))
  rows.push({ round, hitRps: Math.round(hit.rps), missRps: Math.round(miss.rps), ratio: (hit.rps / miss.rps).toFixed(2), hitP99: hit.p99, missP99: miss.p99, upstreamRequestsDuringHits: hitUpstream })
}
console.log('\n## HIT vs proxied (same gateway, same upstream, alternating)')
console.table(rows)

// 2. Memory per entry.
globalThis.gc?.()
const heapBefore = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers
const bytesBefore = app.cache.memory.bytes
const entries = Number(values.entries)
for (let i = 0; i < entries; i += 100) {
  await Promise.all(Array.from({ length: Math.min(100, entries - i) }, (_, j) => request(`${gateway}/cached/item/${i + j}?q=${i + j}`).then((r) => r.body.dump())))
}
globalThis.gc?.()
const heapAfter = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers
console.log(`\n## memory: ${app.cache.memory.entries} entries of a ${body.length}-byte body`)
console.log(`counted by the store: ${((app.cache.memory.bytes - bytesBefore) / entries).toFixed(0)} bytes/entry; heap+arrayBuffers growth: ${((heapAfter - heapBefore) / entries).toFixed(0)} bytes/entry${globalThis.gc === undefined ? ' (run with --expose-gc for a cleaner number)' : ''}`)

// 3. Collapsing.
upstreamDelayMs = 200
const before = upstreamRequests
const concurrent = Number(values.concurrent)
const statuses = await Promise.all(Array.from({ length: concurrent }, () => request(`${gateway}/cached/collapse`).then(async (r) => { await r.body.dump(); return `${r.statusCode} ${r.headers['x-cache-status']}` })))
const counts = {}
for (const status of statuses) counts[status] = (counts[status] ?? 0) + 1
console.log(`\n## collapsing: ${concurrent} concurrent misses for one key, upstream answering in 200 ms`)
console.log(`upstream requests: ${upstreamRequests - before}; answers: ${JSON.stringify(counts)}`)
upstreamDelayMs = 0

// 4. Redis HIT latency vs memory.
if (redisUrl !== undefined) {
  await request(`${gateway}/redis/x`).then((r) => r.body.dump())
  await new Promise((resolve) => setTimeout(resolve, 100))
  const redisRows = []
  for (let round = 0; round < Number(values.rounds); round++) {
    const memory = await load(`${gateway}/cached/x`)
    const hitsBefore = app.cache.status().hits
    const redis = await load(`${gateway}/redis/x`)
    const redisHits = app.cache.status().hits - hitsBefore
    redisRows.push({ round, memoryRps: Math.round(memory.rps), redisRps: Math.round(redis.rps), memoryP50: memory.p50, redisP50: redis.p50, memoryP99: memory.p99, redisP99: redis.p99, redisHitShare: (redisHits / Math.max(1, redis.total)).toFixed(3) })
  }
  console.log('\n## HIT latency: Redis store vs memory store')
  console.table(redisRows)
}

await app.close()
upstream.close()
process.exit(0)
