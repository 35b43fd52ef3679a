import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createBrotliDecompress, createGunzip } from 'node:zlib'
import { pipeline } from 'node:stream/promises'
import { Writable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { adminHeaders, failOnUnhandledRejections, httpRequest, spawnGateway, startUpstream } from '../helper.js'

// A 200 MiB compressible download through a compressing route streams: the real gateway
// process's resident memory (from /proc) grows by a bound that does not depend on the answer's
// size, and the client's decoded bytes hash the same as what the upstream sent. The bound is not
// small: V8 frees the streamed chunks (fresh buffers outside its heap) in batches, once some
// 32 MiB of them have piled up; a copy of the answer held whole would add 200 MiB.
const MIB = 1024 * 1024
const TOTAL = 200 * MIB
const LIMIT_MIB = 64

failOnUnhandledRejections(t)

/** 64 KiB of JSON-ish text that varies from chunk to chunk (so it compresses, but not to nothing). */
function chunkNumber (n: number): Buffer {
  const lines: string[] = []
  let length = 0
  for (let i = 0; length < 64 * 1024; i++) {
    const line = `{"chunk":${n},"line":${i},"value":"${((n * 7919 + i * 104729) % 1_000_003).toString(36)}"}\n`
    lines.push(line)
    length += line.length
  }
  return Buffer.from(lines.join('')).subarray(0, 64 * 1024)
}

if (!existsSync('/proc/self/status')) {
  t.plan(0, 'needs /proc (Linux) to read the gateway process\'s resident memory')
} else {
  const chunks = TOTAL / (64 * 1024)
  const expected = createHash('sha256')
  for (let n = 0; n < chunks; n++) expected.update(chunkNumber(n))
  const expectedHash = expected.digest('hex')

  const upstream = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', etag: '"big"' })
    let n = 0
    const pump = (): void => {
      while (n < chunks) {
        if (!res.write(chunkNumber(n++))) return void res.once('drain', pump)
      }
      res.end()
    }
    pump()
  })
  const gateway = await spawnGateway(t)
  const created = await httpRequest(`${gateway.url}/admin/routes`, {
    method: 'POST',
    headers: { ...adminHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'big', path: '/big', timeoutMs: 120_000, targets: [{ url: upstream.url, weight: 1 }], compression: { types: ['application/x-ndjson'] } })
  })
  if (created.statusCode !== 201) throw new Error(`creating the route: ${created.statusCode} ${created.body}`)
  const rssMiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gateway.process.pid as number}/status`, 'utf8'))?.[1]) / 1024

  for (const encoding of ['gzip', 'br'] as const) {
    t.test(`${encoding}: 200 MiB streams through with bounded memory, decoded byte for byte`, async (t) => {
      const baseline = rssMiB()
      let peak = baseline
      const timer = setInterval(() => { peak = Math.max(peak, rssMiB()) }, 20)
      const response = await request(`${gateway.url}/big`, { headers: { 'accept-encoding': encoding } })
      t.equal(response.statusCode, 200)
      t.equal(response.headers['content-encoding'], encoding)
      t.equal(response.headers['content-length'], undefined)
      t.equal(response.headers.etag, 'W/"big"')
      const hash = createHash('sha256')
      let compressed = 0
      let decoded = 0
      response.body.on('data', (chunk: Buffer) => { compressed += chunk.length })
      await pipeline(response.body, encoding === 'gzip' ? createGunzip() : createBrotliDecompress(), new Writable({
        write (chunk: Buffer, _encoding, done) { decoded += chunk.length; hash.update(chunk); done() }
      }))
      clearInterval(timer)
      peak = Math.max(peak, rssMiB())
      t.equal(decoded, TOTAL)
      t.equal(hash.digest('hex'), expectedHash, 'the decoded body is the upstream\'s, byte for byte')
      t.comment(`${encoding}: ${TOTAL} → ${compressed} bytes; RSS baseline ${baseline.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB`)
      t.ok(peak - baseline < LIMIT_MIB, `RSS grew by ${(peak - baseline).toFixed(1)} MiB (limit ${LIMIT_MIB})`)
    })
  }
}
