// What configuration history costs at scale: a built Gatehouse process (dist/server.js) with
// 1,000 routes and 10,000 consumers (each with an API key): the time of PUT /admin/config
// (one route changed), of one PATCH, and of a rollback, each while autocannon sends proxied
// traffic to the same instance (its p99 reported, against a quiet baseline), and the storage a
// revision takes (new blob bytes) per kind of change.
//   npm run build && node bench/config-history.mjs [--routes N] [--consumers N] [--seconds N]
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir, loadavg } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import SQLite from 'better-sqlite3'
import { freePort } from './free-port.mjs'

const { values } = parseArgs({ options: { routes: { type: 'string', default: '1000' }, consumers: { type: 'string', default: '10000' }, seconds: { type: 'string', default: '6' } } })
const ROUTES = Number(values.routes)
const CONSUMERS = Number(values.consumers)
const SECONDS = Number(values.seconds)
const root = fileURLToPath(new URL('..', import.meta.url))
const TOKEN = 'bench-admin-token-0123456789'
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-config-history-'))
const children = new Set()
process.on('exit', () => {
  for (const child of children) try { process.kill(-child.pid, 'SIGKILL') } catch {}
  rmSync(scratch, { recursive: true, force: true })
})

function start (script, env) {
  const child = spawn(process.execPath, [script], { cwd: root, env: { ...process.env, NODE_ENV: 'production', ...env }, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  children.add(child)
  return child
}

const upstreamPort = await freePort()
start('bench/upstream.mjs', { PORT: String(upstreamPort) })
const port = await freePort()
const dbFile = path.join(scratch, 'gatehouse.db')
start('dist/server.js', { PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: `sqlite:${dbFile}`, ADMIN_TOKEN: TOKEN, LOG_LEVEL: 'warn' })
const base = `http://127.0.0.1:${port}`
for (let i = 0; ; i++) {
  try { if ((await fetch(`${base}/health`)).ok) break } catch {}
  if (i > 300) throw new Error('gateway did not start')
  await new Promise((resolve) => setTimeout(resolve, 100))
}

async function admin (method, url, body) {
  const started = performance.now()
  const response = await fetch(`${base}${url}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await response.text()
  if (!response.ok) throw new Error(`${method} ${url}: ${response.status} ${text.slice(0, 300)}`)
  return { ms: performance.now() - started, body: text.length > 0 ? JSON.parse(text) : null }
}

const target = `http://127.0.0.1:${upstreamPort}`
const document = (timeoutMs) => ({
  routes: Array.from({ length: ROUTES }, (_, i) => ({ name: `r${i}`, path: `/r${i}`, targets: [{ url: target }], timeoutMs: i === 0 ? timeoutMs : 30000 })),
  consumers: Array.from({ length: CONSUMERS }, (_, i) => ({ name: `c${i}` }))
})
const seeded = await admin('PUT', '/admin/config', document(30000))
// One API key per consumer, written straight into the tables (10,000 admin calls would take long), then picked up by a change.
const sqlite = new SQLite(dbFile)
const ids = sqlite.prepare('SELECT id FROM consumers').all()
const insert = sqlite.prepare('INSERT INTO api_keys (id, consumer_id, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)')
sqlite.transaction(() => { for (const { id } of ids) insert.run(randomBytes(8).toString('hex'), id, createHash('sha256').update(randomBytes(16)).digest('hex'), 'gh_abcd', new Date().toISOString()) })()

const blobBytes = () => sqlite.prepare('SELECT COALESCE(SUM(LENGTH(id) + LENGTH(section) + LENGTH(document) + LENGTH(secrets)), 0) AS bytes FROM config_revision_blobs').get().bytes
const revisionCount = () => sqlite.prepare('SELECT COUNT(*) AS n FROM config_revisions').get().n

async function underLoad (label, operation) {
  const load = autocannon({ url: `${base}/r1/x`, connections: 16, duration: SECONDS })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const timings = []
  while (timings.length < 3) {
    const bytesBefore = blobBytes()
    const ms = await operation(timings.length)
    timings.push({ ms, bytes: blobBytes() - bytesBefore })
  }
  const result = await load
  console.log(`${label}: ${timings.map((t) => `${t.ms.toFixed(0)} ms`).join(', ')}; new revision bytes ${timings.map((t) => t.bytes).join(', ')}; ` +
    `proxied during: p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ${result.requests.average} req/s, non-2xx ${result.non2xx}`)
}

console.log(`conditions: ${ROUTES} routes, ${CONSUMERS} consumers with one key each, SQLite; load average ${loadavg().map((n) => n.toFixed(2)).join(' ')}; seeding PUT took ${seeded.ms.toFixed(0)} ms`)
const quiet = await autocannon({ url: `${base}/r1/x`, connections: 16, duration: SECONDS })
console.log(`baseline (no admin change): p50 ${quiet.latency.p50} ms, p99 ${quiet.latency.p99} ms, ${quiet.requests.average} req/s`)
await admin('PATCH', '/admin/routes/r2', { retries: 0 }) // records the keys in a revision
const firstRevision = revisionCount()
await underLoad('PATCH one route', async (i) => (await admin('PATCH', '/admin/routes/r3', { timeoutMs: 1000 + i })).ms)
await underLoad('PATCH one consumer', async (i) => (await admin('PATCH', '/admin/consumers/c3', { rateLimit: { max: 10 + i, windowMs: 1000 } })).ms)
await underLoad('PUT /admin/config (one route changed)', async (i) => (await admin('PUT', '/admin/config', document(5000 + i))).ms)
const target0 = firstRevision
await underLoad('POST /admin/config/rollback', async (i) => (await admin('POST', '/admin/config/rollback', { revision: target0 + i })).ms)
const tables = sqlite.prepare("SELECT SUM(pgsize) AS bytes FROM dbstat WHERE name LIKE 'config_revision%'").get()
console.log(`revisions: ${revisionCount()}, revision tables ${(tables.bytes / 1e6).toFixed(1)} MB on disk; load average now ${loadavg().map((n) => n.toFixed(2)).join(' ')}`)
process.exit(0)
