import { connect } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { createRoute, failOnUnhandledRejections, startGateway, startUpstream } from '../helper.js'
import { parseRaw } from './proxy-raw.js'

// A streamed upload must not be buffered: 256 MiB go chunked through a real socket, the
// gateway and an upstream that discards, all in this process; resident memory may not grow
// by more than 64 MiB (a buffered body would add at least 256 MiB).
const MIB = 1024 * 1024
const TOTAL = 256 * MIB

failOnUnhandledRejections(t)
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const received: number[] = []
const upstream = await startUpstream(t, (req, res) => {
  let bytes = 0
  req.on('data', (chunk: Buffer) => { bytes += chunk.length })
  req.on('end', () => {
    received.push(bytes)
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(String(bytes))
  })
})
const { app, port } = await startGateway(t)
await createRoute(app, { name: 'upload', path: '/upload', bodyLimit: 2 * TOTAL, timeoutMs: 120_000, targets: [{ url: upstream.url, weight: 1 }] })

/** Sends `total` bytes as a chunked body in 64 KiB chunks, honouring backpressure; calls `tick` as it goes. */
async function upload (total: number, tick: () => void): Promise<string> {
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const answer: Buffer[] = []
    socket.on('data', (data: Buffer) => answer.push(data))
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(answer).toString('latin1')))
    socket.write('POST /upload/big HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')
    let sent = 0
    const pump = (): void => {
      while (sent < total) {
        sent += chunk.length
        tick()
        if (!socket.write(frame)) return void socket.once('drain', pump)
      }
      socket.write('0\r\n\r\n')
    }
    pump()
  })
}

t.test('a 256 MiB chunked upload streams through without growing memory by more than 64 MiB', async (t) => {
  // Warm-up: pools, JIT and buffers settle before the baseline is taken.
  await upload(16 * MIB, () => {})
  gc()
  const baseline = process.memoryUsage().rss
  let peak = baseline
  let ticks = 0
  const sample = (): void => { peak = Math.max(peak, process.memoryUsage().rss) }
  const timer = setInterval(sample, 20)
  const answer = parseRaw(await upload(TOTAL, () => { if (++ticks % 64 === 0) sample() }))
  clearInterval(timer)
  sample()
  const growth = (peak - baseline) / MIB
  t.comment(`RSS baseline ${(baseline / MIB).toFixed(1)} MiB, peak ${(peak / MIB).toFixed(1)} MiB, growth ${growth.toFixed(1)} MiB`)
  t.equal(answer.statusCode, 200)
  t.equal(answer.body, String(TOTAL))
  t.same(received, [16 * MIB, TOTAL])
  t.ok(growth < 64, `RSS grew by ${growth.toFixed(1)} MiB (limit 64)`)
})
