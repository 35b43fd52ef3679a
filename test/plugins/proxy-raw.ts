import { connect } from 'node:net'

/** One HTTP/1.1 response parsed from raw text (the first one when several arrived). */
export interface RawResponse {
  statusCode: number
  /** Lower-case names; repeated headers joined with ", " (set-cookie kept as a list in `rawHeaders`). */
  headers: Record<string, string>
  rawHeaders: Array<[string, string]>
  body: string
}

/** Parses the first response of rawHttp() output; a chunked body is decoded. */
export function parseRaw (text: string): RawResponse {
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return { statusCode: 0, headers: {}, rawHeaders: [], body: text }
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n')
  const rawHeaders: Array<[string, string]> = lines.map((line) => {
    const colon = line.indexOf(':')
    return [line.slice(0, colon), line.slice(colon + 1).trim()]
  })
  const headers: Record<string, string> = {}
  for (const [name, value] of rawHeaders) {
    const lower = name.toLowerCase()
    headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`
  }
  let body = text.slice(end + 4)
  if (headers['content-length'] !== undefined) {
    body = body.slice(0, Number(headers['content-length']))
  } else if (headers['transfer-encoding'] === 'chunked') {
    let decoded = ''
    let at = 0
    for (;;) {
      const lineEnd = body.indexOf('\r\n', at)
      const size = parseInt(body.slice(at, lineEnd), 16)
      if (!(size > 0)) break
      decoded += body.slice(lineEnd + 2, lineEnd + 2 + size)
      at = lineEnd + 2 + size + 2
    }
    body = decoded
  }
  return { statusCode: Number(statusLine.split(' ')[1]), headers, rawHeaders, body }
}

export interface RawExchange {
  text: string
  /** True when the server closed the connection (rather than the timeout ending the wait). */
  closedByServer: boolean
}

/**
 * Like rawHttp() from the helper, and tells whether the server closed the connection,
 * e.g. after refusing a smuggling attempt; `then` (optional) is written once the first
 * bytes of an answer have arrived (to send a body after "100 Continue").
 */
export async function rawExchange (port: number, payload: string | Buffer, options: { timeoutMs?: number, then?: string | Buffer } = {}): Promise<RawExchange> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    let timedOut = false
    let then = options.then
    const timer = setTimeout(() => { timedOut = true; socket.destroy() }, options.timeoutMs ?? 3000)
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      if (then !== undefined) {
        socket.write(then)
        then = undefined
      }
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the answer arrived still counts as the server closing.
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') reject(err)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closedByServer: !timedOut })
    })
    socket.write(payload)
  })
}
