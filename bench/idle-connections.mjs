// Memory per idle client connection: opens N connections (default 10000) to Gatehouse (dist/, a
// real process) and leaves them idle, first fresh (connected, nothing sent), then kept alive after
// one answered request; prints the server's resident and V8 memory per connection against its
// baseline. --target bare measures a bare node:http server with Gatehouse's server options, to
// tell Node's share from Gatehouse's.
//
//   npm run build
//   ulimit -n 20000            # each process holds N sockets; the hard limit must allow it
//   node bench/idle-connections.mjs [--connections 10000] [--target gatehouse|bare] [--node-args="…"]
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { freePort } from './free-port.mjs'

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '10000' },
    target: { type: 'string', default: 'gatehouse' },
    'node-args': { type: 'string', default: '' }
  }
})
const count = Number(values.connections)
const root = fileURLToPath(new URL('..', import.meta.url))
const scratch = mkdtempSync(path.join(tmpdir(), 'gatehouse-idle-'))
// eslint-disable-next-line prefer-const -- assigned below, after the exit handler that reads it
let server
process.on('exit', () => {
  try { server?.kill('SIGKILL') } catch {}
  rmSync(scratch, { recursive: true, force: true })
})

// The bare server: node:http with the options app.ts gives Gatehouse's server, answering 200.
const BARE = `
import { createServer } from 'node:http'
createServer({ headersTimeout: 600000, requestTimeout: 600000, keepAliveTimeout: 600000, connectionsCheckingInterval: 1000, maxHeaderSize: 16384 },
  (req, res) => res.end('{"status":"ok"}')).listen(Number(process.env.PORT), '127.0.0.1')
`

const port = await freePort()
const env = {
  ...process.env,
  NODE_ENV: 'production',
  PORT: String(port),
  HOST: '127.0.0.1',
  DATABASE_URL: `sqlite:${path.join(scratch, 'gatehouse.db')}`,
  ADMIN_TOKEN: 'bench-admin-token-0123456789',
  LOG_LEVEL: 'warn',
  MAX_CONNECTIONS: String(count + 100),
  // Long enough that no idle connection is cut while the bench measures.
  HEADERS_TIMEOUT_MS: '600000',
  REQUEST_TIMEOUT_MS: '600000',
  KEEP_ALIVE_TIMEOUT_MS: '600000'
}
const nodeArgs = ['--expose-gc', '--import', path.join(root, 'bench', 'memory-on-signal.mjs'), ...values['node-args'].split(' ').filter(Boolean)]
const entry = values.target === 'bare' ? ['--input-type=module', '-e', BARE] : [path.join(root, 'dist', 'server.js')]
server = spawn(process.execPath, [...nodeArgs, ...entry], { cwd: root, env, stdio: ['ignore', 'inherit', 'pipe'] })
const memoryLines = []
let memoryWaiter = null
createInterface({ input: server.stderr }).on('line', (line) => {
  if (!line.startsWith('memory ')) return void process.stderr.write(`${line}\n`)
  const usage = JSON.parse(line.slice(7))
  usage.rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))[1]) * 1024
  memoryLines.push(usage)
  memoryWaiter?.(usage)
})

async function memory () {
  const settled = new Promise((resolve) => { memoryWaiter = resolve })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  server.kill('SIGUSR2')
  return await settled
}

for (let i = 0; ; i++) {
  try { if ((await fetch(`http://127.0.0.1:${port}/health`)).status === 200) break } catch {}
  if (i > 600) throw new Error('the server never answered /health')
  await new Promise((resolve) => setTimeout(resolve, 100))
}
// Warm the paths once so lazily built state (parsers, compiled handlers) is in the baseline.
for (let i = 0; i < 50; i++) await (await fetch(`http://127.0.0.1:${port}/health`)).text()

const sockets = []
async function openAll () {
  for (let i = 0; i < count; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, count - i) }, () => new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', resolve)
      socket.on('error', reject)
      socket.on('close', () => { if (!closing) console.error('a connection was closed by the server') })
      sockets.push(socket)
    })))
  }
}
let closing = false

/** One GET /health on every connection, 200 at a time; the connections stay open afterwards. */
async function askAll () {
  for (let i = 0; i < sockets.length; i += 200) {
    await Promise.all(sockets.slice(i, i + 200).map((socket) => new Promise((resolve) => {
      socket.once('data', () => resolve())
      socket.write('GET /health HTTP/1.1\r\nHost: bench.test\r\n\r\n')
    })))
  }
}

const kib = (bytes) => (bytes / 1024).toFixed(2)
function report (label, base, now) {
  const per = (field) => kib((now[field] - base[field]) / count)
  console.log(`${label.padEnd(28)} rss ${per('rss')} KiB  heapUsed ${per('heapUsed')} KiB  external ${per('external')} KiB  (rss ${(now.rss / 1048576).toFixed(1)} MiB)`)
}

const baseline = await memory()
console.log(`${values.target}: ${count} idle connections, baseline rss ${(baseline.rss / 1048576).toFixed(1)} MiB, heapUsed ${(baseline.heapUsed / 1048576).toFixed(1)} MiB`)
await openAll()
report('fresh (nothing sent)', baseline, await memory())
await askAll()
report('kept alive after 1 request', baseline, await memory())
closing = true
for (const socket of sockets) socket.destroy()
await new Promise((resolve) => setTimeout(resolve, 2000))
report('after closing them all', baseline, await memory())
process.exit(0)
