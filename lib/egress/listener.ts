import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'

/**
 * The forward-proxy listener (docs/egress.md "Memory"): a plain TCP server in front of a
 * node:http server that never listens itself. A client connection that has sent nothing yet
 * costs only its socket; at its first byte it is handed to the HTTP server, which parses
 * absolute-form requests ('request') and CONNECT ('connect', after which Node releases the
 * parser and the socket belongs to the tunnel). Node's HTTP server allocates its parser and
 * per-connection state when it accepts a connection, so 10,000 idle clients held by it alone
 * cost about twice the memory.
 */
export interface EgressListenerOptions {
  headersTimeoutMs: number
  requestTimeoutMs: number
  keepAliveTimeoutMs: number
  maxConnections: number
  onRequest: (request: IncomingMessage, response: ServerResponse) => void
  onConnect: (request: IncomingMessage, socket: Socket, head: Buffer) => void
  /** What Node's parser refused (answered here with 400, 408 or 431 JSON), for the audit log. */
  onClientError: (socket: Socket, status: number, message: string) => void
}

export interface EgressListener {
  readonly front: NetServer
  readonly http: HttpServer
  listen: (port: number, host: string) => Promise<void>
  /** Port it listens on (after listen). */
  readonly port: number
  /** Stops accepting; idle connections close at once, busy ones as they turn idle. */
  stopAccepting: () => void
  /** Closes every connection still open (the end of the shutdown grace period). */
  closeAll: () => void
}

export function createEgressListener (options: EgressListenerOptions): EgressListener {
  const http = createHttpServer({
    headersTimeout: options.headersTimeoutMs,
    requestTimeout: options.requestTimeoutMs,
    keepAliveTimeout: options.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, options.headersTimeoutMs),
    maxHeaderSize: 16 * 1024
  }, options.onRequest)
  http.on('connect', options.onConnect)
  http.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const [status, message] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'request not received in time']
      : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'request headers exceed 16384 bytes'] : [400, 'malformed HTTP request']
    // A reset while idle between requests is no request at all.
    if (err.code !== 'ECONNRESET') options.onClientError(socket, status, message)
    if (!socket.writable || socket.destroyed) return socket.destroy()
    const body = JSON.stringify({ statusCode: status, error: status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request', message })
    socket.end(`HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  })

  /** Connections that have not sent their first byte yet (nothing else tracks them). */
  const waiting = new Set<Socket>()
  let accepting = true

  const front = createNetServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    if (!accepting) return socket.destroy()
    waiting.add(socket)
    socket.setTimeout(options.headersTimeoutMs, onSilentTimeout)
    socket.on('readable', onFirstReadable)
    socket.on('error', onSilentError)
    socket.on('close', onSilentClose)
  })
  front.maxConnections = options.maxConnections

  function onFirstReadable (this: Socket): void {
    const chunk = this.read() as Buffer | null
    if (chunk === null) return
    this.removeListener('readable', onFirstReadable)
    this.removeListener('error', onSilentError)
    this.removeListener('close', onSilentClose)
    this.setTimeout(0)
    waiting.delete(this)
    // Back into the stream for the HTTP parser, which reads it before anything newer.
    this.unshift(chunk)
    http.emit('connection', this)
  }

  return {
    front,
    http,
    async listen (port, host) {
      await new Promise<void>((resolve, reject) => {
        front.once('error', reject)
        front.listen(port, host, () => {
          front.removeListener('error', reject)
          resolve()
        })
      })
      // Starts the HTTP server's header and request timeout checks (it never listens itself).
      http.emit('listening')
    },
    get port () {
      const address = front.address()
      return typeof address === 'object' && address !== null ? address.port : 0
    },
    stopAccepting () {
      accepting = false
      if (front.listening) front.close()
      for (const socket of waiting) socket.destroy()
      http.closeIdleConnections()
    },
    closeAll () {
      for (const socket of waiting) socket.destroy()
      http.closeAllConnections()
      // Also stops the timeout checks; the HTTP server has no handle of its own to close.
      http.close()
    }
  }

  function onSilentTimeout (this: Socket): void { this.destroy() }
  function onSilentError (this: Socket): void { this.destroy() }
  function onSilentClose (this: Socket): void { waiting.delete(this) }
}
