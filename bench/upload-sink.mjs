// The upstream of bench/upload-memory.mjs: counts and discards each request body, answers its
// length; a GET with ?download=N answers N bytes instead, written as fast as the reader takes them.
import { createServer } from 'node:http'

const CHUNK = Buffer.alloc(64 * 1024, 0x62)

const server = createServer((req, res) => {
  const download = /[?&]download=(\d+)/.exec(req.url)
  if (req.method === 'GET' && download !== null) {
    const total = Number(download[1])
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total })
    let sent = 0
    const pump = () => {
      while (sent < total) {
        const piece = total - sent >= CHUNK.length ? CHUNK : CHUNK.subarray(0, total - sent)
        sent += piece.length
        if (!res.write(piece)) return void res.once('drain', pump)
      }
      res.end()
    }
    return pump()
  }
  let bytes = 0
  req.on('data', (chunk) => { bytes += chunk.length })
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(String(bytes))
  })
})
server.listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
