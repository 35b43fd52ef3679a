// What the dashboard costs the gateway (docs/dashboard.md "What it costs"):
//  1. the traffic buckets on the proxied path: ns per Timeseries.record (a micro-benchmark of the
//     built lib/timeseries.js) against the gateway's measured CPU per proxied request;
//  2. one open dashboard: the Overview's polling (admin requests/s) and the gateway's CPU while
//     it stays open, against the same time with no dashboard;
//  3. time from opening /dashboard (token already in sessionStorage) to the Overview's charts.
// Needs chromium (GATEHOUSE_CHROMIUM, default /usr/bin/chromium).
//   npm run build && node bench/dashboard-cost.mjs [--seconds N] [--requests N]
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { chromium } from 'playwright-core'
import { cpuMs } from './cost-rounds.mjs'
import { freePort } from './free-port.mjs'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '30' }, requests: { type: 'string', default: '20000' } } })
const seconds = Number(values.seconds)
const root = fileURLToPath(new URL('..', import.meta.url))
const ADMIN_TOKEN = 'bench-admin-token-0123456789'
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-dashboard-cost-'))
const children = new Set()
process.on('exit', () => {
  for (const child of children) try { process.kill(-child.pid, 'SIGKILL') } catch {}
  rmSync(scratch, { recursive: true, force: true })
})
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
function start (script, env) {
  const child = spawn(process.execPath, [script], { cwd: root, env: { ...process.env, NODE_ENV: 'production', ...env }, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  children.add(child)
  return child
}
// 1a. Timeseries.record, alone.
const { Timeseries } = await import(pathToFileURL(path.join(root, 'dist/lib/timeseries.js')).href)
const series = new Timeseries()
const routes = Array.from({ length: 20 }, (_, i) => `route-${i}`)
const calls = 3_000_000
for (let i = 0; i < 200_000; i++) series.record(routes[i % 20], 200, 1.5, 100, 200, 'proxied')
let started = process.hrtime.bigint()
for (let i = 0; i < calls; i++) series.record(routes[i % 20], i % 17 === 0 ? 503 : 200, (i % 1000) / 10, 100, 200, 'proxied')
const recordNs = Number(process.hrtime.bigint() - started) / calls
console.log(`Timeseries.record: ${recordNs.toFixed(0)} ns per request (${calls} calls, 20 routes)`)

// The gateway, built, with one route to a local upstream.
const upstream = start('bench/upstream.mjs', { PORT: String(await freePort()) })
const upstreamPort = await new Promise((resolve) => upstream.stdout.once('data', (chunk) => resolve(JSON.parse(String(chunk)).port)))
const port = await freePort()
const gateway = start('dist/server.js', { PORT: String(port), HOST: '127.0.0.1', ADMIN_TOKEN, LOG_LEVEL: 'warn', WORKERS: '1', DATABASE_URL: `sqlite:${path.join(scratch, 'gw.db')}` })
const base = `http://127.0.0.1:${port}`
for (let i = 0; i < 600; i++) { try { if ((await fetch(`${base}/health`)).ok) break } catch {} await sleep(100) }
const created = await fetch(`${base}/admin/routes`, {
  method: 'POST',
  headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
  body: JSON.stringify({ name: 'bench', path: '/api/bench', targets: [{ url: `http://127.0.0.1:${upstreamPort}`, weight: 1 }] })
})
if (created.status !== 201) throw new Error(`creating the route: ${created.status}`)

// 1b. CPU per proxied request of the whole gateway.
await autocannon({ url: `${base}/api/bench/x`, connections: 16, amount: 3000 })
const cpu = cpuMs(gateway.pid)
const load = await autocannon({ url: `${base}/api/bench/x`, connections: 16, amount: Number(values.requests) })
await sleep(300)
const requestUs = (cpuMs(gateway.pid) - cpu) * 1000 / load.requests.total
console.log(`gateway CPU per proxied request: ${requestUs.toFixed(1)} µs (${load.requests.total} requests, ${load.requests.average.toFixed(0)} req/s)`)
console.log(`→ the buckets cost ${(recordNs / 1000 / requestUs * 100).toFixed(2)} % of a proxied request's CPU`)

// 2 and 3. One dashboard, open on the Overview.
const browser = await chromium.launch({ executablePath: process.env.GATEHOUSE_CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] })
try {
  const idleBefore = cpuMs(gateway.pid)
  await sleep(seconds * 1000)
  const idleMs = cpuMs(gateway.pid) - idleBefore

  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } })
  await context.addInitScript((token) => { sessionStorage.setItem('gatehouse.adminToken', token) }, ADMIN_TOKEN)
  const page = await context.newPage()
  started = Date.now()
  await page.goto(`${base}/dashboard`)
  await page.locator('[data-testid=chart-rps] canvas').waitFor()
  console.log(`first Overview render (charts drawn): ${Date.now() - started} ms`)
  await sleep(2000)
  let polled = 0
  page.on('request', (request) => { if (request.url().includes('/admin/')) polled++ })
  const openBefore = cpuMs(gateway.pid)
  await sleep(seconds * 1000)
  const openMs = cpuMs(gateway.pid) - openBefore
  console.log(`one open Overview: ${(polled / seconds).toFixed(2)} admin requests/s; gateway CPU ${(openMs / seconds / 10).toFixed(2)} % of a core (idle without it: ${(idleMs / seconds / 10).toFixed(2)} %) over ${seconds} s`)
} finally {
  await browser.close()
}
for (const child of children) try { process.kill(-child.pid, 'SIGTERM') } catch {}
await sleep(500)
process.exit(0)
