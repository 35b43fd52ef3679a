import type { Socket } from 'node:net'
import type { Route } from '../schemas/route.js'
import type { RoutePipeline } from './pipeline.js'
import type { TraceContext } from './trace-context.js'

/** How a proxied request ended, as written to the audit log (docs/observability.md "Audit log"). */
export type Outcome = 'proxied' | 'no_route' | 'blocked' | 'unauthorized' | 'rate_limited' | 'too_large' | 'upstream_error' | 'cached'

export interface ConsumerIdentity {
  /** null when a JWT names a consumer that is not registered (docs/auth.md "JWT"). */
  id: string | null
  name: string
  /** The consumer's own limit; it overrides the route's when the route limits by consumer. */
  rateLimit: { max: number, windowMs: number } | null
}

/**
 * Per-request state of proxied traffic, created by the first gateway hook and read by
 * every later stage and by the audit hook. Reserved endpoints never get one.
 */
export interface GatewayContext {
  /** performance.now() when the request arrived. */
  startedAt: number
  /** Client address after TRUST_PROXY, IPv4-mapped IPv6 unwrapped. */
  clientIp: string
  /** Normalised path: what routing decided on and what is forwarded. */
  path: string
  /** Raw query string including its '?', or ''. Forwarded byte for byte. */
  query: string
  /** Lower-case Host name without port. */
  host: string
  route: Route | null
  /** The matched route's compiled stages (lib/pipeline.ts); null until a route matched. */
  pipeline: RoutePipeline | null
  consumer: ConsumerIdentity | null
  /** Lower-case names of request headers that must not reach the upstream (credentials). */
  strippedHeaders: string[] | null
  outcome: Outcome
  /** URL of the target that answered (or last failed). */
  target: string | null
  /** Short reason for a rejection or failure, for the audit log. */
  detail: string | null
  bytesIn: number
  /** performance.now() when the current upstream attempt was dispatched; -1 when none is waiting (lib/server-timing.ts). */
  upstreamStartedAt: number
  /** Milliseconds spent waiting for upstreams in attempts already answered or failed. */
  upstreamMs: number
  /** The client connection and its bytesWritten when the request arrived, to measure bytesOut. */
  socket: Socket
  socketBytesWrittenAtStart: number
  /** W3C trace context (lib/trace-context.ts): the client's continued or a new one; null only where no request was parsed. */
  trace: TraceContext | null
}

declare module 'fastify' {
  interface FastifyRequest {
    gateway: GatewayContext | null
  }
}
