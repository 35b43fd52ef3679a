import type { IncomingHttpHeaders } from 'node:http'

/**
 * RFC 9110 7.6.1 hop-by-hop headers, plus Proxy-* which are never forwarded
 * (docs/routing.md "Forwarding"), and HTTP2-Settings, which only means something on the client's connection.
 */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings'
])

/**
 * Request headers that are also not forwarded. Expect: Node has already answered
 * "100 Continue" to the client, and undici refuses to send the header at all (it would
 * turn every `curl --data @big-file` into a 502).
 */
const REQUEST_ONLY_HOP = 'expect'

/**
 * Set by the gateway itself; a client's own copies are dropped. With them the client-IP claims
 * the gateway did not verify (docs/routing.md "Forwarding"): an upstream that trusts X-Real-IP or
 * CF-Connecting-IP must only ever see the address the gateway decided on (TRUST_PROXY).
 */
const GATEWAY_OWNED = new Set([
  'host', 'x-request-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host',
  'x-consumer-id', 'x-consumer-name', 'via', 'forwarded',
  'x-real-ip', 'true-client-ip', 'cf-connecting-ip', 'x-client-ip', 'x-cluster-client-ip',
  // The upstream gets exactly one, the gateway's (lib/forward.ts, docs/logging.md "Tracing").
  'traceparent'
])

/** To the client: the gateway answers in HTTP/1.1. */
const VIA = '1.1 gatehouse'
/** Upstream: the protocol version the gateway received (RFC 9110 7.6.3). */
const VIA_RECEIVED: Readonly<Record<string, string>> = { 1.1: VIA, '1.0': '1.0 gatehouse' }

/** Response headers by lower-case name, as Fastify's reply.getHeaders() gives them and writeHead takes them. */
export type ResponseHead = Record<string, string | number | string[] | undefined>

export interface UpstreamHeaderInput {
  rawHeaders: readonly string[]
  /** Lower-case names listed in the request's Connection header (also hop-by-hop). */
  connectionNamed: ReadonlySet<string> | null
  /** Lower-case names of credential headers the auth stage consumed. */
  stripped: readonly string[] | null
  requestId: string
  forwardedFor: string
  forwardedProto: string
  forwardedHost: string | undefined
  /** The client's own Via header; ours is appended (RFC 9110 7.6.3: every forwarded message gets one). */
  via: string | undefined
  /** The request's HTTP version ("1.1", "1.0"): what our Via entry names. */
  httpVersion: string
  /** The client IP as the gateway decided it (TRUST_PROXY), sent as X-Real-IP. */
  clientIp: string
  /** Host to send when preserveHost; undefined lets the pool use the target's. */
  host: string | undefined
  consumerId: string | null
  consumerName: string | null
}

/**
 * One pass over the raw request headers → the flat [name, value, …] list sent upstream.
 * Header names with '_' are dropped, as nginx does: they can alias
 * hop-by-hop or credential headers in servers that fold '_' into '-'.
 */
export function upstreamRequestHeaders (input: UpstreamHeaderInput): string[] {
  const { rawHeaders, connectionNamed, stripped } = input
  const out: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    // HTTP/2 pseudo-headers (:method, :path, :authority, :scheme) are not headers of an HTTP/1.1 request.
    if (name.charCodeAt(0) === 58) continue
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || lower.startsWith('proxy-') || GATEWAY_OWNED.has(lower) || lower.includes('_') || lower === REQUEST_ONLY_HOP) continue
    if (connectionNamed !== null && connectionNamed.has(lower)) continue
    if (stripped !== null && stripped.includes(lower)) continue
    out.push(name, rawHeaders[i + 1])
  }
  if (input.host !== undefined) out.push('host', input.host)
  out.push('x-request-id', input.requestId)
  out.push('x-forwarded-for', input.forwardedFor)
  out.push('x-forwarded-proto', input.forwardedProto)
  if (input.forwardedHost !== undefined && input.forwardedHost !== '') out.push('x-forwarded-host', input.forwardedHost)
  out.push('x-real-ip', input.clientIp)
  const via = VIA_RECEIVED[input.httpVersion] ?? `${input.httpVersion} gatehouse`
  out.push('via', input.via === undefined || input.via === '' ? via : `${input.via}, ${via}`)
  if (input.consumerId !== null) out.push('x-consumer-id', input.consumerId)
  if (input.consumerName !== null) out.push('x-consumer-name', input.consumerName)
  return out
}

/** Lower-case names listed in a Connection header, or null when it names nothing to drop. */
export function connectionNamedHeaders (connection: string | undefined): Set<string> | null {
  // The usual values name nothing: answered without splitting.
  if (connection === undefined || connection === 'keep-alive' || connection === 'close' || connection === 'Keep-Alive') return null
  let named: Set<string> | null = null
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase()
    if (name === '' || name === 'close' || name === 'keep-alive') continue
    named ??= new Set()
    named.add(name)
  }
  return named
}

/**
 * Upstream response headers → what the client gets, written into `head`, which holds what
 * the gateway's own stages already set (X-Request-Id, x-ratelimit-*, CORS): those win over
 * the upstream's, except Vary, which is a list (the CORS stage merges Origin into it).
 * Hop-by-hop headers are removed and Via is appended. The upstream's X-Request-Id never
 * replaces the gateway's: the client gets the id the upstream was sent.
 */
export function addUpstreamResponseHeaders (head: ResponseHead, headers: IncomingHttpHeaders): ResponseHead {
  const connectionNamed = connectionNamedHeaders(typeof headers.connection === 'string' ? headers.connection : undefined)
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || HOP_BY_HOP.has(name) || name.includes('_') || name === 'x-request-id') continue
    if (connectionNamed !== null && connectionNamed.has(name)) continue
    if (name !== 'vary' && Object.hasOwn(head, name)) continue
    head[name] = value
  }
  const upstreamVia = head.via
  head.via = upstreamVia === undefined ? VIA : `${Array.isArray(upstreamVia) ? upstreamVia.join(', ') : String(upstreamVia)}, ${VIA}`
  return head
}
