// The forward proxy (docs/egress.md) measured on a real process (dist/):
//   memory      resident memory per idle client connection on EGRESS_PORT (fresh, then kept alive
//               after one forwarded request) and per idle CONNECT tunnel, against the baseline
//   throughput  bytes through a CONNECT tunnel vs a direct connection to the same sink
//   rps         requests/s of absolute-form forwarding vs the reverse-proxy path (autocannon)
// The destination servers run in their own process, so only the gateway's memory is measured.
//
//   npm run build
//   ulimit -n 20000   # the gateway holds two sockets per tunnel
//   node bench/egress.mjs memory [--connections 10000] [--tunnels 9500] [--tunnels-only]
//   node bench/egress.mjs throughput [--mib 1024]
//   node bench/egress.mjs rps [--seconds 10] [--connections 50]
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { freePort } from './free-port.mjs'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    connections: { type: 'string', default: '10000' },
    tunnels: { type: 'string', default: '9500' },
    mib: { type: 'string', default: '1024' },
    seconds: { type: 'string', default: '10' },
    'tunnels-only': { type: 'boolean', default: false }
  }
})
const mode = positionals[0] ?? 'memory'
const root = fileURLToPath(new URL('..', import.meta.url))
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-egress-'))
const ADMIN_TOKEN = 'bench-admin-token-0123456789'
const children = new Set()
process.on('exit', () => {
  for (const child of children) try { child.kill('SIGKILL') } catch {}
  rmSync(scratch, { recursive: true, force: true })
})

// Destinations in their own process: an echo/sink TCP server, a source that sends N bytes on
// connect, and an HTTP server answering a small body.
const DESTINATIONS = `
import { createServer } from 'node:net'
import { createServer as createHttp } from 'node:http'
const [echoPort, sinkPort, httpPort] = process.argv.slice(-3).map(Number)
createServer((s) => { s.on('error', () => {}); s.pipe(s) }).listen(echoPort, '127.0.0.1')
createServer((s) => { s.on('error', () => {}); let n = 0; s.on('data', (c) => { n += c.length }); s.on('end', () => s.end(String(n))) }).listen(sinkPort, '127.0.0.1')
createHttp({ keepAliveTimeout: 60000 }, (req, res) => { req.resume(); req.on('end', () => res.end('{"ok":true}')) }).listen(httpPort, '127.0.0.1')
`

function start (args, env = {}, stderr = 'inherit') {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, NODE_ENV: 'production', ...env }, stdio: ['ignore', 'ignore', stderr] })
  children.add(child)
  return child
}

const [port, egressPort, echoPort, sinkPort, httpPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()])
start(['--input-type=module', '-e', DESTINATIONS, echoPort, sinkPort, httpPort].map(String))
const gateway = start(['--expose-gc', '--import', path.join(root, 'bench', 'memory-on-signal.mjs'), path.join(root, 'dist', 'server.js')], {
  PORT: String(port),
  HOST: '127.0.0.1',
  DATABASE_URL: `sqlite:${path.join(scratch, 'gatehouse.db')}`,
  ADMIN_TOKEN,
  LOG_LEVEL: 'warn',
  EGRESS_PORT: String(egressPort),
  EGRESS_AUTH: 'none',
  EGRESS_MAX_CONNECTIONS: '30000',
  MAX_CONNECTIONS: '30000',
  HEADERS_TIMEOUT_MS: '600000',
  REQUEST_TIMEOUT_MS: '600000',
  KEEP_ALIVE_TIMEOUT_MS: '600000'
}, 'pipe')
let memoryWaiter = null
createInterface({ input: gateway.stderr }).on('line', (line) => {
  if (!line.startsWith('memory ')) return void process.stderr.write(`${line}\n`)
  const usage = JSON.parse(line.slice(7))
  usage.rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gateway.pid}/status`, 'utf8'))[1]) * 1024
  memoryWaiter?.(usage)
})
async function memory () {
  const settled = new Promise((resolve) => { memoryWaiter = resolve })
  await new Promise((resolve) => setTimeout(resolve, 1500))
  gateway.kill('SIGUSR2')
  return await settled
}

const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }
for (let i = 0; ; i++) {
  try { if ((await fetch(`http://127.0.0.1:${port}/health`)).status === 200) break } catch {}
  if (i > 600) throw new Error('the gateway never answered /health')
  await new Promise((resolve) => setTimeout(resolve, 100))
}
const rule = await fetch(`http://127.0.0.1:${port}/admin/egress-rules`, {
  method: 'POST', headers: admin, body: JSON.stringify({ action: 'allow', cidr: '127.0.0.1', ports: [echoPort, sinkPort, httpPort] })
})
if (rule.status !== 201) throw new Error(`rule: ${rule.status} ${await rule.text()}`)
const route = await fetch(`http://127.0.0.1:${port}/admin/routes`, {
  method: 'POST', headers: admin, body: JSON.stringify({ name: 'bench', path: '/bench', targets: [{ url: `http://127.0.0.1:${httpPort}` }] })
})
if (route.status !== 201) throw new Error(`route: ${route.status} ${await route.text()}`)
console.log(`load average at start: ${readFileSync('/proc/loadavg', 'utf8').trim()}`)

function openSocket (targetPort) {
  return new Promise((resolve, reject) => {
    const socket = connect(targetPort, '127.0.0.1', () => resolve(socket))
    socket.on('error', reject)
  })
}

async function openTunnel (target) {
  const socket = await openSocket(egressPort)
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`)
  await new Promise((resolve, reject) => {
    socket.once('data', (chunk) => chunk.toString('latin1').startsWith('HTTP/1.1 200') ? resolve() : reject(new Error(chunk.toString())))
  })
  return socket
}

async function inBatches (count, open) {
  const out = []
  for (let i = 0; i < count; i += 200) out.push(...await Promise.all(Array.from({ length: Math.min(200, count - i) }, open)))
  return out
}

const kib = (bytes) => (bytes / 1024).toFixed(2)
function report (label, count, base, now) {
  const per = (field) => kib((now[field] - base[field]) / count)
  console.log(`${label.padEnd(40)} rss ${per('rss')} KiB  heapUsed ${per('heapUsed')} KiB  external ${per('external')} KiB each  (rss ${(now.rss / 1048576).toFixed(1)} MiB)`)
}

if (mode === 'memory') {
  // Warm every path once so lazily built state is in the baseline.
  for (let i = 0; i < 20; i++) (await openTunnel(`127.0.0.1:${echoPort}`)).destroy()
  const warm = await openSocket(egressPort)
  warm.write(`GET http://127.0.0.1:${httpPort}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
  warm.resume()
  await new Promise((resolve) => warm.on('close', resolve))
  const base = await memory()
  console.log(`baseline rss ${(base.rss / 1048576).toFixed(1)} MiB`)

  const count = values['tunnels-only'] ? 0 : Number(values.connections)
  const clients = await inBatches(count, () => openSocket(egressPort))
  if (count > 0) report(`${count} idle client connections, fresh`, count, base, await memory())
  for (let i = 0; i < clients.length; i += 200) {
    await Promise.all(clients.slice(i, i + 200).map((socket) => new Promise((resolve) => {
      socket.once('data', () => resolve())
      socket.write(`GET http://127.0.0.1:${httpPort}/ HTTP/1.1\r\nHost: x\r\n\r\n`)
    })))
  }
  if (count > 0) report(`${count} kept alive after 1 request`, count, base, await memory())
  for (const socket of clients) socket.destroy()
  await new Promise((resolve) => setTimeout(resolve, 3000))
  const afterClients = count > 0 ? await memory() : base
  if (count > 0) report('after closing them', count, base, afterClients)

  const tunnels = Number(values.tunnels)
  const open = await inBatches(tunnels, () => openTunnel(`127.0.0.1:${echoPort}`))
  report(`${tunnels} idle tunnels`, tunnels, afterClients, await memory())
  for (const socket of open) socket.destroy()
} else if (mode === 'throughput') {
  const total = Number(values.mib) * 1024 * 1024
  const chunk = Buffer.alloc(64 * 1024, 'x')
  async function push (socket) {
    const started = process.hrtime.bigint()
    let sent = 0
    while (sent < total) {
      sent += chunk.length
      if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve))
    }
    socket.end()
    const answer = await new Promise((resolve) => { let text = ''; socket.on('data', (c) => { text += c }); socket.on('end', () => resolve(text)) })
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    if (Number(answer) !== total) throw new Error(`the sink counted ${answer} bytes, not ${total}`)
    return seconds
  }
  const direct = await push(await openSocket(sinkPort))
  const tunnelled = await push(await openTunnel(`127.0.0.1:${sinkPort}`))
  const mibs = (seconds) => (total / 1048576 / seconds).toFixed(0)
  console.log(`${values.mib} MiB direct:        ${direct.toFixed(2)} s  ${mibs(direct)} MiB/s`)
  console.log(`${values.mib} MiB through CONNECT: ${tunnelled.toFixed(2)} s  ${mibs(tunnelled)} MiB/s  (${(100 * direct / tunnelled).toFixed(0)}% of direct)`)
} else if (mode === 'rps') {
  const seconds = Number(values.seconds)
  const connections = Number(values.connections)
  const run = (url, requestPath) => autocannon({ url, connections, duration: seconds, requests: [{ method: 'GET', path: requestPath }] })
  await run(`http://127.0.0.1:${egressPort}`, `http://127.0.0.1:${httpPort}/x`) // warm-up, not reported
  await run(`http://127.0.0.1:${port}`, '/bench/x') // warm-up, not reported
  // Alternated, so a burst of load from other processes does not land on one side only.
  const reverse = await run(`http://127.0.0.1:${port}`, '/bench/x')
  const forward = await run(`http://127.0.0.1:${egressPort}`, `http://127.0.0.1:${httpPort}/x`)
  const line = (label, result) => console.log(`${label.padEnd(34)} ${result.requests.average.toFixed(0)} req/s  p50 ${result.latency.p50} ms  p99 ${result.latency.p99} ms  non-2xx ${result.non2xx}  errors ${result.errors}`)
  line('absolute-form via EGRESS_PORT', forward)
  line('reverse proxy via a route', reverse)
}
console.log(`load average at end: ${readFileSync('/proc/loadavg', 'utf8').trim()}`)
process.exit(0)
