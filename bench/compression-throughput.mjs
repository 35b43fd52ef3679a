// Compression at the levels lib/compression.ts uses: MiB of input per second of CPU (the whole
// process's, zlib's thread pool included: what one core does when it has nothing else to do, and
// steady on a loaded machine where wall-clock rates are not), with a stream per answer as the
// gateway compresses an upstream's answer, on a 16 KiB JSON answer and on a 1 MiB one; and the
// compressed sizes.   node bench/compression-throughput.mjs [--seconds S]
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { compressor } from '../dist/lib/compression.js'

const { values: options } = parseArgs({ options: { seconds: { type: 'string', default: '3' } } })
const seconds = Number(options.seconds)

function jsonAnswer (bytes) {
  const items = []
  for (let i = 0; JSON.stringify(items).length < bytes; i++) {
    items.push({ id: i, sku: `SKU-${(i * 7919) % 100000}`, name: `Item number ${i}`, price: Math.round(((i * 37) % 1000) * 1.07 * 100) / 100, tags: ['alpha', 'beta', 'gamma'].slice(0, 1 + (i % 3)), inStock: i % 5 !== 0, updatedAt: new Date(1_700_000_000_000 + i * 60_000).toISOString() })
  }
  return Buffer.from(JSON.stringify(items)).subarray(0, bytes)
}

async function compressOnce (encoding, body) {
  const stream = compressor(encoding)
  let size = 0
  stream.on('data', (chunk) => { size += chunk.length })
  await new Promise((resolve, reject) => {
    stream.once('end', resolve)
    stream.once('error', reject)
    // Written in 16 KiB pieces, as an upstream's body arrives.
    for (let at = 0; at < body.length; at += 16_384) stream.write(body.subarray(at, at + 16_384))
    stream.end()
  })
  return size
}

console.log(`compression-throughput: ${seconds} s per case, one core, load average ${loadavg().map((n) => n.toFixed(1)).join(' ')}`)
console.log('| encoding | answer | MiB of input per CPU second | MiB/s wall clock | compressed size | ratio |')
console.log('|---|---:|---:|---:|---:|---:|')
for (const [label, body] of [['16 KiB JSON', jsonAnswer(16 * 1024)], ['1 MiB JSON', jsonAnswer(1024 * 1024)]]) {
  for (const encoding of ['gzip', 'br']) {
    const size = await compressOnce(encoding, body)
    // Warm-up (JIT, allocator), discarded.
    for (const warmUntil = performance.now() + 1000; performance.now() < warmUntil;) await compressOnce(encoding, body)
    let bytes = 0
    const started = performance.now()
    const cpuBefore = process.cpuUsage()
    while (performance.now() - started < seconds * 1000) {
      await compressOnce(encoding, body)
      bytes += body.length
    }
    const cpu = process.cpuUsage(cpuBefore)
    const mib = bytes / (1024 * 1024)
    const perCpuSecond = mib / ((cpu.user + cpu.system) / 1e6)
    const perWallSecond = mib / ((performance.now() - started) / 1000)
    console.log(`| ${encoding} | ${label} | ${perCpuSecond.toFixed(1)} | ${perWallSecond.toFixed(1)} | ${size} | ${(body.length / size).toFixed(2)} |`)
  }
}
