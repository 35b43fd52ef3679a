import type { GatewayContext } from './gateway-context.js'
import type { ResponseHead } from './proxy-headers.js'

/**
 * `Server-Timing: gateway;dur=…, upstream;dur=…` (docs/transforms.md "Server-Timing"): upstream
 * is the time spent waiting for the upstream — from each dispatch to its answer's first byte
 * or its failure, summed over attempts — and gateway is the rest of the time since the request
 * arrived. Two performance.now() readings per attempt, taken in lib/forward.ts.
 */

/** The current attempt is over at `at`: its wait joins the total. */
export function upstreamAnswered (context: GatewayContext, at: number): void {
  if (context.upstreamStartedAt < 0) return
  context.upstreamMs += at - context.upstreamStartedAt
  context.upstreamStartedAt = -1
}

/** Adds the gateway's entries to `head` at `now`, after the upstream's own Server-Timing if it sent one. */
export function addServerTiming (head: ResponseHead, context: GatewayContext, now: number): void {
  upstreamAnswered(context, now)
  const upstream = context.upstreamMs
  const gateway = Math.max(0, now - context.startedAt - upstream)
  const ours = `gateway;dur=${gateway.toFixed(2)}, upstream;dur=${upstream.toFixed(2)}`
  const existing = head['server-timing']
  head['server-timing'] = existing === undefined || existing === '' ? ours : `${Array.isArray(existing) ? existing.join(', ') : String(existing)}, ${ours}`
}
