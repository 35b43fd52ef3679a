// The upstream of bench/upload-memory.mjs: counts and discards each request body, answers its length.
import { createServer } from 'node:http'

const server = createServer((req, res) => {
  let bytes = 0
  req.on('data', (chunk) => { bytes += chunk.length })
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(String(bytes))
  })
})
server.listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
