import type { Server as HttpServer } from 'node:http'
import { createSecureServer, type Http2SecureServer, type Http2Session } from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { deferContinue } from '../lib/expect-continue.js'

/**
 * The HTTPS listener (docs/tls.md): TLS_PORT serves the same Fastify app as the main listener,
 * through the app's own request handler. ALPN offers h2 and http/1.1; HTTP/1.1 connections
 * get the main listener's limits (header and request timeouts, keep-alive, 16 KiB of headers,
 * the deferred 100 Continue, JSON answers to parse errors), HTTP/2 sessions Envoy's edge limits.
 * Each handshake gets its certificate from the SNI table (plugins/certificates.ts).
 */
export interface TlsListener {
  readonly server: Http2SecureServer
  /** Starts listening; resolves with the port (TLS_PORT, or `port` when given: tests pass 0). */
  listen: (host: string, port?: number) => Promise<number>
  readonly port: number | null
  /** Open HTTP/2 sessions (idle or not), for the drain and tests. */
  readonly sessions: ReadonlySet<Http2Session>
  /** During the drain: closes the HTTP/1.1 connections that are idle now. */
  closeIdleConnections: () => void
  /** At the end of the grace period: every connection is cut. */
  closeAllConnections: () => void
}

declare module 'fastify' {
  interface FastifyInstance {
    tlsListener: TlsListener | null
  }
}

/** HTTP/2 limits (docs/tls.md "HTTP/2"): Envoy's edge defaults. */
export const H2_MAX_CONCURRENT_STREAMS = 100
const H2_STREAM_WINDOW_BYTES = 65_536

/** What Node's HTTP/2 server has for its HTTP/1.1 connections (allowHTTP1), missing from its types. */
type Http1Limits = Http2SecureServer & {
  headersTimeout: number
  requestTimeout: number
  keepAliveTimeout: number
  maxHeaderSize: number
  connectionsCheckingInterval: number
  closeIdleConnections: () => void
}

const tlsListenerPlugin: FastifyPluginAsync = async (app) => {
  const { config, certificates } = app
  if (config.tlsPort === null || config.tlsDefault === null || certificates.sniTable === null) {
    app.decorate('tlsListener', null)
    return
  }
  const handler = app.httpHandler
  const main = app.server as HttpServer & { maxHeaderSize: number }
  const server = createSecureServer({
    allowHTTP1: true,
    cert: config.tlsDefault.cert,
    key: config.tlsDefault.key,
    SNICallback: certificates.sniTable.sniCallback,
    minVersion: 'TLSv1.2',
    settings: {
      maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
      initialWindowSize: H2_STREAM_WINDOW_BYTES,
      maxHeaderListSize: main.maxHeaderSize
    },
    // Rapid reset (CVE-2023-44487): nghttp2's own guard in Node (1000 resets in a burst, then
    // 33 a second) sends GOAWAY and closes the session; frames Node cannot process, likewise.
    maxSessionInvalidFrames: 100
  }, handler as unknown as Parameters<typeof createSecureServer>[1])
  // HTTP/1.1 over TLS: the main listener's limits (Node applies them to allowHTTP1 connections).
  const http1 = server as Http1Limits
  Object.assign(http1, {
    headersTimeout: config.headersTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    maxHeaderSize: main.maxHeaderSize,
    connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs)
  } satisfies Partial<Http1Limits>)
  // Idle HTTP/2 sessions (and idle HTTP/1.1 sockets) close after KEEP_ALIVE_TIMEOUT_MS.
  server.setTimeout(config.keepAliveTimeoutMs)
  server.on('checkContinue', deferContinue(handler))
  // Parse errors, CONNECT: answered and audited exactly as on the main listener.
  server.on('clientError' as 'session', (err: unknown, socket: unknown) => { main.emit('clientError', err, socket) })
  server.on('connect' as 'session', (req: unknown, socket: unknown, head: unknown) => { main.emit('connect', req, socket, head) })
  server.on('tlsClientError', (err, socket) => { app.log.debug({ err, remoteAddress: socket.remoteAddress }, 'TLS handshake failed') })

  const sockets = new Set<TLSSocket>()
  server.on('secureConnection', (socket: TLSSocket) => {
    app.accessLog.trackConnection(socket)
    sockets.add(socket)
    socket.once('close', () => { sockets.delete(socket) })
  })
  const sessions = new Set<Http2Session>()
  server.on('session', (session) => {
    sessions.add(session)
    session.once('close', () => { sessions.delete(session) })
    // A session Node closes for a flood (rapid reset, invalid frames) is logged once.
    session.once('error', (err) => { app.log.warn({ err: { code: (err as NodeJS.ErrnoException).code, message: err.message } }, 'HTTP/2 session closed on error') })
  })
  app.connectionCap.apply(server, 'tls')
  // HTTP/1.1 connections may upgrade to WebSocket (no WebSocket over HTTP/2).
  app.websockets.attach(server as unknown as Parameters<typeof app.websockets.attach>[0])

  let port: number | null = null
  let listening = false
  const listener: TlsListener = {
    server,
    get port () { return port },
    get sessions () { return sessions },
    closeIdleConnections () { http1.closeIdleConnections() },
    closeAllConnections () {
      for (const session of sessions) session.destroy()
      for (const socket of sockets) socket.destroy()
    },
    async listen (host, wanted = config.tlsPort as number) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(wanted, host, () => {
          server.off('error', reject)
          resolve()
        })
      })
      listening = true
      port = (server.address() as AddressInfo).port
      app.log.info({ port, host }, 'HTTPS listener (h2, http/1.1) listening')
      return port
    }
  }
  app.decorate('tlsListener', listener)

  // Closes with the main listener: new connections refused at once, open ones drained in
  // parallel with the main listener's (lib/shutdown.ts sweeps and cuts both).
  let closed: Promise<void> = Promise.resolve()
  app.addHook('preClose', async () => {
    if (!listening) return
    closed = new Promise((resolve) => { server.close(() => { resolve() }) })
    for (const session of sessions) session.close()
    http1.closeIdleConnections()
  })
  app.addHook('onClose', async () => { await closed })
}

export default fp(tlsListenerPlugin, { name: 'tls-listener', dependencies: ['certificates', 'connection-cap', 'websocket', 'access-log'] })
