// Protocols bench (docs/tls.md, docs/websocket.md): TLS handshakes per second on one gateway
// process (ECDSA P-256 and RSA-2048), HTTP/2 vs HTTP/1.1 requests per second through TLS for a
// small answer, WebSocket tunnel throughput for 1 MiB messages against a direct connection, and
// the gateway's memory per open idle tunnel. Needs `npm run build` and openssl.
// Usage: node bench/protocols.mjs [seconds per measurement, default 5] [idle tunnels, default 10000]
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { connect as h2connect } from 'node:http2'
import { tmpdir, loadavg } from 'node:os'
import path from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import WebSocket from 'ws'
import { freePort } from './free-port.mjs'

const SECONDS = Number(process.argv[2] ?? 5)
const TUNNELS = Number(process.argv[3] ?? 10_000)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const TOKEN = 'bench-admin-token-0123456789'
const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-protocols-'))
const children = []
process.on('exit', () => { for (const child of children) child.kill('SIGKILL') })

function certificate (name, type) {
  const cert = path.join(dir, `${name}.crt`)
  const key = path.join(dir, `${name}.key`)
  const keyArgs = type === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048']
  execFileSync('openssl', ['req', '-x509', ...keyArgs, '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=bench.test', '-days', '2'], { stdio: 'ignore' })
  return { cert, key }
}

async function startProcess (script, env = {}) {
  const child = spawn(process.execPath, [script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(child)
  return await new Promise((resolve) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      const line = out.split('\n').find((l) => l.startsWith('{"port"'))
      if (line !== undefined) resolve({ child, port: JSON.parse(line).port })
    })
  })
}

async function startGateway (cert, extra = {}) {
  const port = await freePort()
  const tlsPort = await freePort()
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/server.js')], {
    cwd: dir,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      TLS_PORT: String(tlsPort),
      TLS_CERT_FILE: cert.cert,
      TLS_KEY_FILE: cert.key,
      DATABASE_URL: `sqlite:${path.join(dir, `gw-${port}.db`)}`,
      ADMIN_TOKEN: TOKEN,
      SECRET_KEY: 'bench-secret-key-0123456789',
      LOG_LEVEL: 'error',
      MAX_CONNECTIONS: '30000',
      ...extra
    },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  children.push(child)
  for (;;) {
    try {
      const response = await request(`http://127.0.0.1:${port}/health`)
      await response.body.dump()
      if (response.statusCode === 200) break
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return { child, port, tlsPort }
}

async function admin (gateway, method, url, body) {
  const response = await request(`http://127.0.0.1:${gateway.port}${url}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await response.body.text()
  if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${response.statusCode} ${text}`)
}

function rssMiB (pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024
}

/** New TLS connections, full handshakes (no session resumption), `concurrency` at a time. */
async function handshakesPerSecond (port, concurrency = 16) {
  let done = 0
  const until = Date.now() + SECONDS * 1000
  const worker = async () => {
    while (Date.now() < until) {
      await new Promise((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'bench.test', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => { done++; socket.destroy(); resolve() })
        socket.on('error', reject)
      })
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return done / SECONDS
}

async function h1RequestsPerSecond (tlsPort, concurrency = 64) {
  const agent = new Agent({ connections: 16, pipelining: 1, connect: { rejectUnauthorized: false } })
  let done = 0
  const until = Date.now() + SECONDS * 1000
  const worker = async () => {
    while (Date.now() < until) {
      const response = await request(`https://127.0.0.1:${tlsPort}/small`, { dispatcher: agent })
      await response.body.dump()
      if (response.statusCode === 200) done++
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  await agent.close()
  return done / SECONDS
}

async function h2RequestsPerSecond (tlsPort, concurrency = 64) {
  const session = h2connect(`https://127.0.0.1:${tlsPort}`, { rejectUnauthorized: false })
  await new Promise((resolve) => session.once('remoteSettings', resolve))
  let done = 0
  const until = Date.now() + SECONDS * 1000
  const one = () => new Promise((resolve, reject) => {
    const stream = session.request({ ':path': '/small' })
    let status = 0
    stream.on('response', (headers) => { status = headers[':status'] })
    stream.on('data', () => {})
    stream.on('end', () => { if (status === 200) done++; resolve() })
    stream.on('error', reject)
  })
  const worker = async () => { while (Date.now() < until) await one() }
  await Promise.all(Array.from({ length: concurrency }, worker))
  session.close()
  return done / SECONDS
}

async function openSocket (url) {
  const socket = new WebSocket(url, { maxPayload: 64 * 1024 * 1024, perMessageDeflate: false })
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject) })
  return socket
}

/** 1 MiB messages echoed one after the other for SECONDS: MiB/s each way. */
async function wsThroughput (url) {
  const socket = await openSocket(url)
  const message = Buffer.alloc(1024 * 1024, 1)
  let echoed = 0
  const until = Date.now() + SECONDS * 1000
  const started = Date.now()
  while (Date.now() < until) {
    socket.send(message)
    await new Promise((resolve) => socket.once('message', resolve))
    echoed++
  }
  const seconds = (Date.now() - started) / 1000
  socket.terminate()
  return echoed / seconds
}

const result = { conditions: { loadavg: loadavg().map((v) => v.toFixed(1)).join(' '), secondsPerMeasurement: SECONDS, node: process.version } }

const ec = certificate('ec', 'ec')
const rsa = certificate('rsa', 'rsa')
const upstream = await startProcess(path.join(ROOT, 'bench/upstream.mjs'), { PORT: String(await freePort()) })
const wsUpstream = await startProcess(path.join(ROOT, 'bench/ws-upstream.mjs'), { PORT: String(await freePort()) })

{
  const gateway = await startGateway(rsa)
  result.handshakesPerSecondRsa2048 = Math.round(await handshakesPerSecond(gateway.tlsPort))
  gateway.child.kill('SIGKILL')
}
const gateway = await startGateway(ec)
result.handshakesPerSecondEcdsaP256 = Math.round(await handshakesPerSecond(gateway.tlsPort))

await admin(gateway, 'POST', '/admin/routes', { name: 'small', path: '/small', targets: [{ url: `http://127.0.0.1:${upstream.port}` }] })
await admin(gateway, 'POST', '/admin/routes', { name: 'ws', path: '/ws', websocket: true, targets: [{ url: `http://127.0.0.1:${wsUpstream.port}` }] })
result.h1RequestsPerSecondTls = Math.round(await h1RequestsPerSecond(gateway.tlsPort))
result.h2RequestsPerSecondTls = Math.round(await h2RequestsPerSecond(gateway.tlsPort))
result.wsMiBPerSecondDirect = Number((await wsThroughput(`ws://127.0.0.1:${wsUpstream.port}/`)).toFixed(1))
result.wsMiBPerSecondThroughGateway = Number((await wsThroughput(`ws://127.0.0.1:${gateway.port}/ws`)).toFixed(1))

// Idle tunnels: the gateway's RSS before and with TUNNELS open.
await new Promise((resolve) => setTimeout(resolve, 1000))
const before = rssMiB(gateway.child.pid)
const sockets = []
for (let i = 0; i < TUNNELS; i += 200) {
  const batch = await Promise.allSettled(Array.from({ length: Math.min(200, TUNNELS - i) }, () => openSocket(`ws://127.0.0.1:${gateway.port}/ws`)))
  for (const one of batch) if (one.status === 'fulfilled') sockets.push(one.value)
}
await new Promise((resolve) => setTimeout(resolve, 2000))
const after = rssMiB(gateway.child.pid)
result.idleTunnelsOpen = sockets.length
result.gatewayRssMiBBefore = Number(before.toFixed(1))
result.gatewayRssMiBWithTunnels = Number(after.toFixed(1))
result.kiBPerIdleTunnel = Number(((after - before) * 1024 / Math.max(1, sockets.length)).toFixed(1))
for (const socket of sockets) socket.terminate()

console.log(JSON.stringify(result, null, 2))
process.exit(0)
