import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { atMostEvery } from '../../lib/at-most-every.js'
import { GatewayError } from '../../lib/errors.js'
import { clientKey } from '../../lib/ip.js'
import { inClusterWorker, primaryLink } from '../../lib/cluster-ipc.js'
import { MemoryRateLimitStore, type RateLimitStore } from '../../lib/rate-limit-store.js'
import { ClusterWindowStore } from '../../lib/sliding-window-cluster.js'
import { RedisWindowStore } from '../../lib/sliding-window-redis.js'
import type { Route } from '../../schemas/route.js'
import { compileRateLimitStage, gatewayWidePolicy, type Policy, routePolicy } from './stage.js'

/**
 * Rate limits on proxied traffic (docs/policies.md "Rate limits"): a route's own
 * `rateLimit {max, windowMs, by}`, else the gateway-wide RATE_LIMIT_MAX per client IP shared
 * by every route without one. Sliding-window counters (lib/sliding-window.ts) in memory, or
 * in Redis when REDIS_URL is set (lib/sliding-window-redis.ts), or without Redis under WORKERS > 1
 * in the cluster primary, so the limit is the host's (lib/sliding-window-cluster.ts), all behind
 * the RateLimitStore interface (lib/rate-limit-store.ts). A route's `rateLimit.banSeconds` bans a
 * key that exceeds its limit for that long, in the same store.
 *
 * Why not @fastify/rate-limit (which the issue suggested): it was evaluated and fits only
 * with everything substantial replaced. Its hook is async and awaits keyGenerator, allowList,
 * max and timeWindow separately on every request, so "which limit applies to this route and
 * this consumer" would be resolved three times per request from the route table; its store
 * interface (incr(key, cb, timeWindow, max)) has no read or reset, which
 * GET/DELETE /admin/rate-limits/:ip need; its 429 is a thrown error, so the audit outcome
 * would be patched in through onExceeded; and its skipOnError fails open silently, where the
 * gateway wants a warning and a metric. What would remain of it is setting four headers.
 * The stage (after auth: it needs request.gateway.consumer) keeps the same header semantics (x-ratelimit-limit / -remaining / -reset in
 * seconds, Retry-After in seconds on 429), stays synchronous with the memory store
 * (callback-style, like every hot-path hook here), and resolves the limit once per route
 * when the route table is swapped; a route without a limit (and no RATE_LIMIT_MAX) has no
 * rate-limit stage at all.
 */
export interface RateLimits {
  /** The counters that apply to this client IP on every route that limits it (no counting). */
  counters: (ip: string) => Promise<CounterView[]>
  /**
   * Resets this IP's own counters (per-IP route counters and the gateway-wide one) and lifts
   * every ban it is under; returns how many counters existed and how many bans were in force.
   */
  reset: (ip: string) => Promise<{ counters: number, bans: number }>
  readonly store: RateLimitStore['kind']
  /** Counts one hit against `key` in the same store (the egress proxy's consumer limits use "egress:…" keys). */
  hit: (key: string, max: number, windowMs: number) => ReturnType<RateLimitStore['hit']>
  /** Requests let through because the Redis store or the cluster primary failed (fail open). */
  readonly failOpen: number
  /** Keys held by this process's memory store (0 with Redis or the cluster primary). */
  readonly memoryKeys: number
}

export interface CounterView {
  routeId: string | null
  routeName: string | null
  /** "ip": this IP's own counter on the route; "route": shared by every client of the route; "gateway": RATE_LIMIT_MAX. */
  scope: 'ip' | 'route' | 'gateway'
  key: string
  limit: number
  windowMs: number
  /** Requests counted in the sliding window (weighted, rounded up). */
  current: number
  remaining: number
  resetSeconds: number
  /** The route's rateLimit.banSeconds; null: no bans on this counter. */
  banSeconds: number | null
  /** When the ban on this counter ends (ISO); null: not banned. */
  bannedUntil: string | null
}

declare module 'fastify' {
  interface FastifyInstance {
    rateLimits: RateLimits
  }
}

export interface RateLimitOptions {
  /** Memory store bound (default 1,000,000 keys). */
  maxKeys?: number
}

/**
 * How long a worker waits for the cluster primary's decision before failing open. A round trip
 * takes 0.1 ms idle; the margin is for a host so loaded that the primary is not scheduled for a
 * while (seen at a load average of 15 on 2 cores), which must not turn into admitted requests.
 */
const CLUSTER_STORE_TIMEOUT_MS = 250

const rateLimitPlugin: FastifyPluginAsync<RateLimitOptions> = async (app, options) => {
  const redis = app.redis?.client ?? null
  const memory = redis === null && !inClusterWorker() ? new MemoryRateLimitStore({ maxKeys: options.maxKeys }) : null
  const store: RateLimitStore = memory ?? (redis !== null
    ? new RedisWindowStore(redis, `${app.redis.keyPrefix}rl:`, app.redis.run)
    : new ClusterWindowStore(primaryLink(), CLUSTER_STORE_TIMEOUT_MS))
  const gatewayWide = gatewayWidePolicy(app.config.rateLimitMax, app.config.rateLimitWindowMs)
  const policyOf = (route: Route): Policy | null => routePolicy(route, gatewayWide)

  let failOpen = 0
  const mayWarn = atMostEvery(10_000)
  function failedOpen (err: unknown): void {
    failOpen++
    if (mayWarn()) app.log.warn({ err: (err as Error).message, failedOpen: failOpen }, 'rate-limit store unavailable; letting requests through (fail open)')
  }

  app.routeTable.addStage('rate-limit', (route) => compileRateLimitStage(policyOf(route), store, failedOpen))

  /** The counters an IP has, as [policy, key, scope] for every route in the table. */
  function countersOf (ip: string): Array<{ policy: Policy, key: string, scope: CounterView['scope'] }> {
    const subject = clientKey(ip)
    const found: Array<{ policy: Policy, key: string, scope: CounterView['scope'] }> = []
    let gatewayListed = false
    for (const route of app.routeTable.routes) {
      const policy = policyOf(route)
      if (policy === null) continue
      if (policy.by === 'gateway') {
        if (!gatewayListed) found.push({ policy, key: policy.prefix + subject, scope: 'gateway' })
        gatewayListed = true
      } else if (policy.by === 'route') {
        found.push({ policy, key: policy.prefix, scope: 'route' })
      } else {
        found.push({ policy, key: policy.prefix + subject, scope: 'ip' })
      }
    }
    if (!gatewayListed && gatewayWide !== null) found.push({ policy: gatewayWide, key: gatewayWide.prefix + subject, scope: 'gateway' })
    return found
  }

  /** Admin calls need the store: when it fails they answer 503 naming it, never 500. */
  async function fromStore<T> (operation: () => T | Promise<T>): Promise<T> {
    try {
      return await operation()
    } catch (err) {
      throw new GatewayError(503, 'GW_RATE_LIMIT_STORE_UNAVAILABLE', `rate-limit store (${store.kind}) unavailable: ${(err as Error).message}`, { 'retry-after': '1' })
    }
  }

  app.decorate('rateLimits', {
    async counters (ip) {
      const views: CounterView[] = []
      for (const { policy, key, scope } of countersOf(ip)) {
        const decision = await fromStore(() => store.peek(key, policy.max, policy.windowMs))
        const banMs = await fromStore(() => store.banRemainingMs(key))
        views.push({
          routeId: policy.route?.id ?? null,
          routeName: policy.route?.name ?? null,
          scope,
          key,
          limit: policy.max,
          windowMs: policy.windowMs,
          current: decision === null ? 0 : Math.ceil(decision.estimate - 1e-9),
          remaining: decision === null ? policy.max : decision.remaining,
          resetSeconds: decision === null ? 0 : decision.resetSeconds,
          banSeconds: policy.banMs === 0 ? null : policy.banMs / 1000,
          bannedUntil: banMs === 0 ? null : new Date(Date.now() + banMs).toISOString()
        })
      }
      return views
    },
    async reset (ip) {
      const counters = countersOf(ip)
      const own = [...new Set(counters.filter((counter) => counter.scope !== 'route').map((counter) => counter.key))]
      // A by-route ban refuses this IP too; lifting it is the only way short of waiting it out.
      const banned = [...new Set(counters.map((counter) => counter.key))]
      return {
        counters: await fromStore(() => store.delete(own)),
        bans: await fromStore(() => store.liftBans(banned))
      }
    },
    get store () { return store.kind },
    hit: (key, max, windowMs) => store.hit(key, max, windowMs, 0),
    get failOpen () { return failOpen },
    get memoryKeys () { return memory?.windows.size ?? 0 }
  } satisfies RateLimits)

  // The metrics plugin may be registered after this one: look for it once everything is.
  app.addHook('onReady', async () => {
    if (!app.hasDecorator('metrics')) return
    app.metrics.counter('gatehouse_rate_limit_fail_open_total',
      'Proxied requests let through without a rate-limit decision because the Redis store (or, with WORKERS > 1, the cluster primary) failed', () => failOpen)
  })

  app.addHook('onClose', async () => { store.close() })
}

export default fp(rateLimitPlugin, { name: 'rate-limit', dependencies: ['route-table', 'redis'] })
