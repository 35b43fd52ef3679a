// How much a streamed body grows a proxy's memory: a chunked upload (default 1 GiB) to an
// upstream process that discards it, then a download of the same size from it, through Gatehouse
// (dist/, a real process) and, for comparison, through the minimal Fastify + @fastify/reply-from
// proxy. Samples each proxy's resident memory from /proc (Linux) every 20 ms and prints
// baseline, peak and growth.
//   npm run build && node bench/upload-memory.mjs [--mib N] [--node-args=--max-semi-space-size=1] [--gatehouse-only]
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { freePort } from './free-port.mjs'

const { values } = parseArgs({ options: { mib: { type: 'string', default: '1024' }, 'node-args': { type: 'string', default: '' }, 'gatehouse-only': { type: 'boolean', default: false } } })
const MIB = 1024 * 1024
const total = Number(values.mib) * MIB
const nodeArgs = values['node-args'].split(' ').filter(Boolean)
const root = fileURLToPath(new URL('..', import.meta.url))
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-upload-'))
const ADMIN_TOKEN = 'bench-admin-token-0123456789'
const children = new Set()
process.on('exit', () => {
  for (const child of children) try { child.kill('SIGKILL') } catch {}
  rmSync(scratch, { recursive: true, force: true })
})

function start (script, env, args = []) {
  const child = spawn(process.execPath, [...args, script], { cwd: root, env: { ...process.env, NODE_ENV: 'production', ...env }, stdio: ['ignore', 'ignore', 'inherit'] })
  children.add(child)
  return child
}

async function ready (url) {
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(url)).status < 500) return } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${url} never answered`)
}

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024

/** Sends `bytes` as a chunked body in 64 KiB chunks, honouring backpressure; resolves with the raw answer. */
function upload (port, bytes) {
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const answer = []
    socket.on('data', (data) => answer.push(data))
    socket.on('error', (err) => reject(new Error(`upload to port ${port}: ${err.message}; answer so far: ${Buffer.concat(answer).toString('latin1').slice(0, 300)}`)))
    socket.on('close', () => resolve(Buffer.concat(answer).toString('latin1')))
    socket.write('POST /upload/big HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')
    let sent = 0
    const pump = () => {
      while (sent < bytes) {
        sent += chunk.length
        if (!socket.write(frame)) return void socket.once('drain', pump)
      }
      socket.write('0\r\n\r\n')
    }
    pump()
  })
}

/** GETs `bytes` from the sink through the proxy, reading as fast as they come; resolves with the count. */
function download (port, bytes) {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let received = 0
    let head = ''
    socket.on('data', (data) => {
      if (head.length < 200) head += data.subarray(0, 200).toString('latin1')
      received += data.length
    })
    socket.on('error', (err) => reject(new Error(`download from port ${port}: ${err.message}`)))
    socket.on('close', () => resolve({ head, received }))
    socket.write(`GET /upload/big?download=${bytes} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n`)
  })
}

/** Runs `transfer` while sampling the proxy's RSS; prints and returns the growth. */
async function measure (proxy, label, transfer) {
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const baseline = rssMiB(proxy.child.pid)
  let peak = baseline
  const timer = setInterval(() => { peak = Math.max(peak, rssMiB(proxy.child.pid)) }, 20)
  const started = Date.now()
  await transfer()
  clearInterval(timer)
  const seconds = (Date.now() - started) / 1000
  console.log(`  ${proxy.name.padEnd(22)} ${label.padEnd(8)} RSS baseline ${baseline.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB, growth ${(peak - baseline).toFixed(1)} MiB  (${(total / MIB / seconds).toFixed(0)} MiB/s)`)
}

const upstreamPort = await freePort()
start('bench/upload-sink.mjs', { PORT: String(upstreamPort) })
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`
await ready(upstreamUrl)

const proxies = []
if (!values['gatehouse-only']) {
  const port = await freePort()
  proxies.push({ name: 'fastify + reply-from', port, child: start('bench/minimal-proxy.mjs', { PORT: String(port), UPSTREAM_URL: upstreamUrl }, nodeArgs) })
}
{
  const port = await freePort()
  const child = start('dist/server.js', {
    PORT: String(port), HOST: '127.0.0.1', ADMIN_TOKEN, LOG_LEVEL: 'warn', WORKERS: '1', DATABASE_URL: `sqlite:${path.join(scratch, 'gatehouse.db')}`
  }, nodeArgs)
  await ready(`http://127.0.0.1:${port}/health`)
  const created = await fetch(`http://127.0.0.1:${port}/admin/routes`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'upload', path: '/upload', bodyLimit: 4 * total, timeoutMs: 600_000, targets: [{ url: upstreamUrl, weight: 1 }] })
  })
  if (created.status !== 201) throw new Error(`creating the route: ${created.status} ${await created.text()}`)
  proxies.push({ name: 'gatehouse', port, child })
}

console.log(`upload-memory: ${values.mib} MiB chunked upload, then download, per proxy${nodeArgs.length > 0 ? `, node ${nodeArgs.join(' ')}` : ''}`)
for (const proxy of proxies) {
  await ready(`http://127.0.0.1:${proxy.port}/upload/ready`)
  await upload(proxy.port, 32 * MIB) // warm-up: pools, JIT and buffers settle before the baseline
  await download(proxy.port, 32 * MIB)
  await measure(proxy, 'upload', async () => {
    const answer = await upload(proxy.port, total)
    // The sink answers the byte count it received (possibly in one chunk of a chunked answer).
    if (!answer.startsWith('HTTP/1.1 200') || (!answer.includes(`\r\n${total}\r\n`) && !answer.endsWith(`\r\n\r\n${total}`))) throw new Error(`${proxy.name} answered ${answer.slice(0, 300)}`)
  })
  await measure(proxy, 'download', async () => {
    const { head, received } = await download(proxy.port, total)
    if (!head.startsWith('HTTP/1.1 200') || received < total) throw new Error(`${proxy.name} answered ${head.slice(0, 200)} with ${received} bytes`)
  })
}
process.exit(0)
