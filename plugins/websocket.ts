import { request as httpRequest, type ClientRequest, type IncomingMessage, ServerResponse } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { Gauge } from 'prom-client'
import { gatewayErrors } from '../lib/errors.js'
import { buildUpstreamRequest, upstreamFailure, upstreamPath } from '../lib/forward.js'
import type { GatewayContext } from '../lib/gateway-context.js'
import { rejectWith } from '../lib/gateway-reply.js'
import { addUpstreamResponseHeaders } from '../lib/proxy-headers.js'
import { upstreamTlsOf } from '../lib/upstream-tls.js'
import { acceptFor } from '../lib/websocket-handshake.js'
import { closeFrame, FrameBoundary, GOING_AWAY } from '../lib/websocket-frames.js'
import { GatewayError } from '../lib/errors.js'
import type { Route } from '../schemas/route.js'

/**
 * WebSocket proxying (docs/websocket.md). Node hands an upgrade request to the server's
 * 'upgrade' listeners with the bare socket; here it is given a response on that socket and
 * run through the app's own handler, so it meets filters, route match, auth, rate limit and
 * CORS like any request (plugins/proxy.ts refuses invalid handshakes and routes without
 * `websocket`). The proxy then calls open(): the handshake goes to a target, and only a 101
 * carrying the right Sec-WebSocket-Accept turns the two connections into a tunnel. Any other
 * answer is relayed as a normal answer and the connection closes — it is never upgraded.
 */
export interface WebSockets {
  /** Listens for upgrades on a listener of the process. */
  attach: (server: { on: (event: 'upgrade', listener: (req: IncomingMessage, socket: Socket, head: Buffer) => void) => unknown }) => void
  /** Forwards a routed, checked handshake (called by the proxy instead of forwarding). */
  open: (request: FastifyRequest, reply: FastifyReply) => void
  /** Open tunnels. */
  readonly count: number
  /** Closes every tunnel (shutdown at SHUTDOWN_GRACE_MS). */
  closeAll: (reason: string) => void
}

declare module 'fastify' {
  interface FastifyInstance {
    websockets: WebSockets
  }
}

export const DEFAULT_IDLE_TIMEOUT_MS = 300_000
/** After the Close frames, how long the two connections may take to finish closing before they are cut. */
const CLOSE_LINGER_MS = 1000

const kUpgradeHead = Symbol('gatehouse.upgradeHead')
type UpgradeRequest = IncomingMessage & { [kUpgradeHead]?: Buffer }

interface Tunnel {
  routeId: string
  close: (reason: string) => void
}

export function idleTimeoutOf (route: Route): number {
  return typeof route.websocket === 'object' ? route.websocket.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS : DEFAULT_IDLE_TIMEOUT_MS
}

const websocketPlugin: FastifyPluginAsync = async (app) => {
  const { upstreams, accessLog } = app
  const tunnels = new Set<Tunnel>()
  const handler = app.httpHandler

  // eslint-disable-next-line no-new -- prom-client registers the metric when it is built
  new Gauge({
    name: 'gatehouse_websocket_connections',
    help: 'Open WebSocket tunnels',
    registers: [app.metrics.registry],
    collect () { this.set(tunnels.size) }
  })

  function onUpgrade (req: IncomingMessage, socket: Socket, head: Buffer): void {
    // Errors of the bare socket are the client's doing; they end in 'close'.
    socket.on('error', ignore)
    ;(req as UpgradeRequest)[kUpgradeHead] = head
    const res = new ServerResponse(req)
    // Whatever is answered on it that is not a tunnel, the connection then closes: Node's
    // parser has let go of it, and bytes after an answer must never reach anyone as a request.
    res.shouldKeepAlive = false
    res.assignSocket(socket)
    res.once('finish', () => { socket.end() })
    handler(req, res)
  }

  /** Drops tunnels whose route is gone, disabled, or no longer accepts WebSocket. */
  app.routeTable.onSwap((routes) => {
    if (tunnels.size === 0) return
    const live = new Set(routes.filter((route) => route.enabled && route.websocket !== false).map((route) => route.id))
    for (const tunnel of tunnels) if (!live.has(tunnel.routeId)) tunnel.close('route deleted or disabled')
  })

  function open (request: FastifyRequest, reply: FastifyReply): void {
    const context = request.gateway as GatewayContext
    const route = context.route as Route
    const raw = request.raw as UpgradeRequest
    const target = upstreams.select(route)
    if (target === null) return void rejectWith(reply, context, gatewayErrors.noHealthyTarget(upstreams.retryAfterSeconds(route)), 'upstream_error')
    context.target = target.url
    target.inFlight++
    let settled = false
    const settle = (): void => {
      if (settled) return
      settled = true
      target.inFlight--
    }
    const { path, headers: flat } = buildUpstreamRequest(request, context, route)
    const headers: Record<string, string> = { connection: 'Upgrade', upgrade: 'websocket' }
    for (let i = 0; i < flat.length; i += 2) {
      const name = flat[i].toLowerCase()
      headers[name] = headers[name] === undefined ? flat[i + 1] : `${headers[name]}, ${flat[i + 1]}`
    }
    const url = new URL(target.url)
    const https = url.protocol === 'https:'
    const tls = upstreamTlsOf(route, target.url)?.connect
    const upstream: ClientRequest = (https ? httpsRequest : httpRequest)({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port === '' ? (https ? 443 : 80) : Number(url.port),
      method: 'GET',
      path: upstreamPath(target.basePath, path) + context.query,
      headers,
      agent: false,
      ...(https ? { rejectUnauthorized: tls?.rejectUnauthorized ?? true, ca: tls?.ca, servername: tls?.servername ?? (url.hostname.startsWith('[') ? undefined : url.hostname) } : {})
    })
    const timeoutMs = route.timeoutMs
    upstream.setTimeout(timeoutMs, () => {
      upstream.destroy(Object.assign(new Error('upstream did not answer the handshake in time'), { code: 'UND_ERR_HEADERS_TIMEOUT' }))
    })
    const clientGone = (): void => { if (!settled) upstream.destroy() }
    raw.socket.once('close', clientGone)
    upstream.on('error', (err) => {
      raw.socket.off('close', clientGone)
      if (settled) return
      settle()
      if (raw.socket.destroyed) return
      const failure = upstreamFailure(err, timeoutMs)
      upstreams.report(target, failure.targetFault ? 'failure' : 'aborted')
      rejectWith(reply, context, failure.error, 'upstream_error')
    })
    upstream.on('response', (response) => {
      // Not a 101 (e.g. 426, 403, 200): relayed as a normal answer, never upgraded; the
      // connection then closes (onUpgrade).
      raw.socket.off('close', clientGone)
      settle()
      upstream.setTimeout(0)
      upstreams.report(target, response.statusCode !== undefined && response.statusCode >= 500 ? 'failure' : 'success')
      context.detail = `upstream refused the WebSocket upgrade with ${response.statusCode ?? 0}`
      const head = addUpstreamResponseHeaders(reply.getHeaders(), response.headers)
      reply.code(response.statusCode ?? 502).headers(head).send(response)
    })
    upstream.on('upgrade', (response, upstreamSocket, upstreamHead) => {
      raw.socket.off('close', clientGone)
      settle()
      upstream.setTimeout(0)
      const expected = acceptFor((raw.headers['sec-websocket-key'] as string).trim())
      if (response.headers['sec-websocket-accept'] !== expected) {
        upstreamSocket.destroy()
        upstreams.report(target, 'failure')
        return void rejectWith(reply, context, new GatewayError(502, 'GW_UPSTREAM_BAD_HANDSHAKE', 'upstream answered 101 without the right Sec-WebSocket-Accept: not upgraded'), 'upstream_error')
      }
      upstreams.report(target, 'success')
      startTunnel(request, reply, response, upstreamSocket, upstreamHead)
    })
    upstream.end()
  }

  function startTunnel (request: FastifyRequest, reply: FastifyReply, response: IncomingMessage, upstreamSocket: Socket, upstreamHead: Buffer): void {
    const context = request.gateway as GatewayContext
    const route = context.route as Route
    const client = request.raw.socket
    reply.hijack()
    reply.raw.statusCode = 101
    const head = addUpstreamResponseHeaders(reply.getHeaders(), response.headers)
    context.pipeline?.onResponseHead?.(request, head)
    head.upgrade = 'websocket'
    head.connection = 'Upgrade'
    let lines = 'HTTP/1.1 101 Switching Protocols\r\n'
    for (const [name, value] of Object.entries(head)) {
      if (value === undefined) continue
      for (const one of Array.isArray(value) ? value : [value]) lines += `${name}: ${String(one)}\r\n`
    }
    client.write(lines + '\r\n')
    accessLog.tunnelOpened(reply)

    const clientHead = (request.raw as UpgradeRequest)[kUpgradeHead]
    const readAtStart = client.bytesRead
    upstreamSocket.on('error', ignore)
    // Frame boundaries of each direction, so that a close the gateway decides on can send each
    // side a Close frame between frames (lib/websocket-frames.ts).
    const toClient = new FrameBoundary()
    const toUpstream = new FrameBoundary()
    relay(upstreamSocket, client, toClient)
    relay(client, upstreamSocket, toUpstream)
    if (upstreamHead.length > 0) {
      toClient.feed(upstreamHead)
      client.write(upstreamHead)
    }
    if (clientHead !== undefined && clientHead.length > 0) {
      toUpstream.feed(clientHead)
      upstreamSocket.write(clientHead)
    }
    const idleTimeoutMs = idleTimeoutOf(route)
    client.setTimeout(idleTimeoutMs)
    upstreamSocket.setNoDelay(true)
    client.setNoDelay(true)

    let closed = false
    const finish = (reason: string): void => {
      closed = true
      tunnels.delete(tunnel)
      if (context.detail === null) context.detail = `tunnel closed: ${reason}`
      context.bytesIn = (client.bytesRead - readAtStart) + (clientHead?.length ?? 0)
      accessLog.tunnelClosed(reply)
    }
    const tunnel: Tunnel = {
      routeId: route.id,
      close (reason) {
        if (closed) return
        // Going Away to each side that is between frames; then both connections end.
        if (toClient.atBoundary && client.writable) client.write(closeFrame(GOING_AWAY, reason, false))
        if (toUpstream.atBoundary && upstreamSocket.writable) upstreamSocket.write(closeFrame(GOING_AWAY, reason, true))
        finish(reason)
        client.end()
        upstreamSocket.end()
        setTimeout(() => { client.destroy(); upstreamSocket.destroy() }, CLOSE_LINGER_MS).unref()
      }
    }
    tunnels.add(tunnel)
    client.once('timeout', () => { tunnel.close(`idle for ${idleTimeoutMs} ms`) })
    const closedBy = (side: string) => () => {
      if (!closed) finish(`${side} closed`)
      client.destroy()
      upstreamSocket.destroy()
    }
    client.once('close', closedBy('client'))
    upstreamSocket.once('close', closedBy('upstream'))
  }

  app.decorate('websockets', {
    attach (server) { server.on('upgrade', onUpgrade) },
    open,
    get count () { return tunnels.size },
    closeAll (reason) { for (const tunnel of tunnels) tunnel.close(reason) }
  } satisfies WebSockets)
  app.websockets.attach(app.server)
}

function ignore (): void {}

/** One direction of a tunnel: bytes as they come, paced by the reader (backpressure), frame boundaries tracked. */
function relay (from: Socket, to: Socket, frames: FrameBoundary): void {
  from.on('data', (chunk: Buffer) => {
    frames.feed(chunk)
    if (!to.write(chunk)) from.pause()
  })
  to.on('drain', () => { from.resume() })
  from.once('end', () => { to.end() })
}

export default fp(websocketPlugin, { name: 'websocket', dependencies: ['upstreams', 'route-table', 'metrics'] })
