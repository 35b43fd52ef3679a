import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { GatewayContext } from '../../lib/gateway-context.js'
import { reject } from '../../lib/gateway-reply.js'
import { clientKey } from '../../lib/ip.js'
import type { RouteStage } from '../../lib/pipeline.js'
import type { RateLimitStore } from '../../lib/rate-limit-store.js'
import type { Decision } from '../../lib/sliding-window.js'
import type { Route } from '../../schemas/route.js'

/** A limit resolved once per route (and once for the gateway-wide limit). */
export interface Policy {
  by: 'ip' | 'route' | 'consumer' | 'gateway'
  /** Counter key prefix: "r:<route id>:" or "g:". */
  prefix: string
  max: number
  windowMs: number
  /** rateLimit.banSeconds in ms; 0: no ban (always for the gateway-wide limit). */
  banMs: number
  route: Route | null
}

/** RATE_LIMIT_MAX per client IP, shared by every route without a limit of its own; null when unset. */
export function gatewayWidePolicy (max: number | null, windowMs: number): Policy | null {
  return max === null ? null : { by: 'gateway', prefix: 'g:', max, windowMs, banMs: 0, route: null }
}

/** The limit a route runs under: its own, else the gateway-wide one, else none. */
export function routePolicy (route: Route, gatewayWide: Policy | null): Policy | null {
  const limit = route.rateLimit
  return limit === null
    ? gatewayWide
    : { by: limit.by, prefix: `r:${route.id}:`, max: limit.max, windowMs: limit.windowMs, banMs: (limit.banSeconds ?? 0) * 1000, route }
}

/**
 * The route's rate-limit stage (after auth: a limit by consumer needs request.gateway.consumer),
 * or none when no limit applies. Synchronous with the memory store; with Redis or the cluster
 * primary it waits for the decision, and lets the request through when the store fails
 * (`failedOpen` counts and warns).
 */
export function compileRateLimitStage (policy: Policy | null, store: RateLimitStore, failedOpen: (err: unknown) => void): RouteStage | null {
  if (policy === null) return null
  return {
    name: 'rate-limit',
    onRequest (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
      const context = request.gateway as GatewayContext
      let key: string
      let max = policy.max
      let windowMs = policy.windowMs
      if (policy.by === 'route') {
        key = policy.prefix
      } else if (policy.by === 'consumer' && context.consumer !== null) {
        const consumer = context.consumer
        key = consumer.id === null ? `${policy.prefix}n:${consumer.name}` : `${policy.prefix}c:${consumer.id}`
        if (consumer.rateLimit !== null) {
          max = consumer.rateLimit.max
          windowMs = consumer.rateLimit.windowMs
        }
      } else {
        // by ip, gateway-wide, and by consumer for requests without one.
        key = policy.prefix + clientKey(context.clientIp)
      }

      const decision = store.hit(key, max, windowMs, policy.banMs)
      if (!(decision instanceof Promise)) return answer(reply, context, done, decision)
      decision.then(
        (decided) => answer(reply, context, done, decided),
        (err: unknown) => {
          failedOpen(err)
          reply.header('x-ratelimit-limit', max)
          done()
        }
      )
    }
  }
}

function answer (reply: FastifyReply, context: GatewayContext, done: HookHandlerDoneFunction, decision: Decision): void {
  reply.header('x-ratelimit-limit', decision.limit)
  reply.header('x-ratelimit-remaining', decision.remaining)
  reply.header('x-ratelimit-reset', decision.resetSeconds)
  if (decision.allowed) return done()
  const message = decision.banned
    ? `rate limit of ${decision.limit} requests exceeded; banned for another ${decision.retryAfterSeconds} s`
    : `rate limit of ${decision.limit} requests exceeded; retry in ${decision.retryAfterSeconds} s`
  reject(reply, context, 429, 'rate_limited', message, { 'retry-after': String(decision.retryAfterSeconds) })
}
