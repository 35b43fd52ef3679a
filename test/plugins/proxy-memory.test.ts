import { existsSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { adminHeaders, failOnUnhandledRejections, httpRequest, spawnGateway, startUpstream } from '../helper.js'
import { parseRaw } from './proxy-raw.js'

// Bodies stream both ways without being buffered and without their garbage piling up
// (docs/routing.md "Memory while streaming"): after a 256 MiB warm-up each way has taken the
// process to its plateau, 1 GiB goes up as a chunked upload, then 1 GiB comes down, through the
// real gateway process; its resident memory (read from /proc) may not grow by more than 64 MiB
// either way: V8 frees dead chunk buffers (memory outside its heap) on its own schedule, which
// lets some tens of MiB pile up whatever the body's size. Measured: 0.2–32 MiB up, 0.4–7 MiB
// down; a buffered body would add at least 1024 MiB.
const MIB = 1024 * 1024
const TOTAL = 1024 * MIB
const LIMIT_MIB = 64
const WARM_UP = 256 * MIB

failOnUnhandledRejections(t)

if (!existsSync('/proc/self/status')) {
  t.plan(0, 'needs /proc (Linux) to read the gateway process\'s resident memory')
} else {
  const uploaded: number[] = []
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  const upstream = await startUpstream(t, (req, res) => {
    const download = /[?&]download=(\d+)/.exec(req.url ?? '')
    if (download !== null) {
      const total = Number(download[1])
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total })
      let sent = 0
      const pump = (): void => {
        while (sent < total) {
          const piece = total - sent >= chunk.length ? chunk : chunk.subarray(0, total - sent)
          sent += piece.length
          if (!res.write(piece)) return void res.once('drain', pump)
        }
        res.end()
      }
      return pump()
    }
    let bytes = 0
    req.on('data', (data: Buffer) => { bytes += data.length })
    req.on('end', () => {
      uploaded.push(bytes)
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(String(bytes))
    })
  })
  const gateway = await spawnGateway(t)
  const created = await httpRequest(`${gateway.url}/admin/routes`, {
    method: 'POST',
    headers: { ...adminHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'stream', path: '/stream', bodyLimit: 2 * TOTAL, timeoutMs: 120_000, targets: [{ url: upstream.url, weight: 1 }] })
  })
  if (created.statusCode !== 201) throw new Error(`creating the route: ${created.statusCode} ${created.body}`)

  const rssMiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gateway.process.pid as number}/status`, 'utf8'))?.[1]) / 1024

  /** Sends `total` bytes as a chunked body in 64 KiB chunks, honouring backpressure. */
  const upload = async (total: number): Promise<string> => {
    const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])
    return await new Promise((resolve, reject) => {
      const socket = connect(gateway.port, '127.0.0.1')
      const answer: Buffer[] = []
      socket.on('data', (data: Buffer) => answer.push(data))
      socket.on('error', reject)
      socket.on('close', () => resolve(Buffer.concat(answer).toString('latin1')))
      socket.write('POST /stream/up HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')
      let sent = 0
      const pump = (): void => {
        while (sent < total) {
          sent += chunk.length
          if (!socket.write(frame)) return void socket.once('drain', pump)
        }
        socket.write('0\r\n\r\n')
      }
      pump()
    })
  }

  /** GETs `total` bytes, reading them as fast as they come; resolves with the head and the byte count. */
  const download = async (total: number): Promise<{ head: string, received: number }> => {
    return await new Promise((resolve, reject) => {
      const socket = connect(gateway.port, '127.0.0.1')
      let head = ''
      let received = 0
      socket.on('data', (data: Buffer) => {
        if (!head.includes('\r\n\r\n') && head.length < 4096) head += data.subarray(0, 4096).toString('latin1')
        received += data.length
      })
      socket.on('error', reject)
      socket.on('close', () => resolve({ head, received }))
      socket.write(`GET /stream/down?download=${total} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n`)
    })
  }

  /** The gateway's RSS growth while `transfer` runs, sampled every 20 ms. */
  const growthDuring = async (t: Test, transfer: () => Promise<void>): Promise<number> => {
    await new Promise((resolve) => setTimeout(resolve, 500))
    const baseline = rssMiB()
    let peak = baseline
    const timer = setInterval(() => { peak = Math.max(peak, rssMiB()) }, 20)
    try {
      await transfer()
    } finally {
      clearInterval(timer)
    }
    peak = Math.max(peak, rssMiB())
    t.comment(`RSS baseline ${baseline.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB`)
    return peak - baseline
  }

  t.test(`a 1 GiB chunked upload grows the gateway by less than ${LIMIT_MIB} MiB`, async (t) => {
    // Warm-up: pools, JIT, buffers and V8's own schedule for freeing dead chunks settle at their
    // plateau before the baselines are taken (after only 32 MiB the baseline was up to 26 MiB lower).
    await upload(WARM_UP)
    await download(WARM_UP)
    let answer = ''
    const growth = await growthDuring(t, async () => { answer = await upload(TOTAL) })
    const response = parseRaw(answer)
    t.equal(response.statusCode, 200)
    t.equal(response.body, String(TOTAL))
    t.same(uploaded, [WARM_UP, TOTAL])
    t.ok(growth < LIMIT_MIB, `RSS grew by ${growth.toFixed(1)} MiB (limit ${LIMIT_MIB})`)
  })

  t.test(`a 1 GiB download grows the gateway by less than ${LIMIT_MIB} MiB`, async (t) => {
    let result = { head: '', received: 0 }
    const growth = await growthDuring(t, async () => { result = await download(TOTAL) })
    t.match(result.head, /^HTTP\/1\.1 200 /)
    const headLength = result.head.indexOf('\r\n\r\n') + 4
    t.ok(headLength > 4, 'a complete head')
    t.equal(result.received - headLength, TOTAL, 'every body byte arrived')
    t.ok(growth < LIMIT_MIB, `RSS grew by ${growth.toFixed(1)} MiB (limit ${LIMIT_MIB})`)
  })
}
