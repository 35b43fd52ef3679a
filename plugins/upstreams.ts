import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { type ActiveHealthCheck, DEFAULT_PASSIVE_HEALTH, type PassiveHealthOptions } from '../lib/health-check.js'
import { HealthProbers } from '../lib/health-probers.js'
import { RouteBalancers } from '../lib/route-balancers.js'
import { registerUpstreamMetrics } from '../lib/upstream-metrics.js'
import { UpstreamPools } from '../lib/upstream-pools.js'
import type { AttemptResult, Target } from '../lib/upstream-target.js'
import { UpstreamTargets } from '../lib/upstream-targets.js'
import type { Route } from '../schemas/route.js'

export interface Upstreams {
  /** Pick a target for this route, skipping `exclude`; null when none is usable. Count the request in `inFlight` yourself. */
  select: (route: Route, exclude?: ReadonlySet<Target>) => Target | null
  /** The outcome of one attempt, for passive health checks. */
  report: (target: Target, result: AttemptResult) => void
  /** Seconds until some target of the route may take requests again (for Retry-After), at least 1. */
  retryAfterSeconds: (route: Route) => number
  /** forward() counts each retry here, for /metrics. */
  countRetry: () => void
  /** Every target currently used by some route. */
  targets: () => Iterable<Target>
  target: (url: string) => Target | undefined
  /** The active check probing this URL, if any (one per URL per process). */
  healthCheck: (url: string) => ActiveHealthCheck | undefined
}

declare module 'fastify' {
  interface FastifyInstance {
    upstreams: Upstreams
  }
}

export interface UpstreamsOptions {
  /** Time to establish an upstream connection, separate from a route's timeoutMs (response). */
  connectTimeoutMs?: number
  connectionsPerOrigin?: number
  passiveHealth?: Partial<PassiveHealthOptions>
}

const upstreamsPlugin: FastifyPluginAsync<UpstreamsOptions> = async (app, options) => {
  const passive: PassiveHealthOptions = { ...DEFAULT_PASSIVE_HEALTH, ...options.passiveHealth }
  validateOptions(options, passive)
  const pools = new UpstreamPools({ connectionsPerOrigin: options.connectionsPerOrigin ?? 128, connectTimeoutMs: options.connectTimeoutMs ?? 5000 })
  const targets = new UpstreamTargets(pools, passive)
  const balancers = new RouteBalancers(targets)
  const probers = new HealthProbers(targets, (target, healthy, reason) => {
    app.log[healthy ? 'info' : 'warn']({ target: target.url, reason }, healthy ? 'active health check: target up' : 'active health check: target down')
  })
  let retries = 0

  const upstreams: Upstreams = {
    select (route, exclude) {
      const target = balancers.pick(route, Date.now(), exclude)
      target?.chosen()
      return target
    },
    report (target, result) {
      // The common case, a healthy target answering, changes nothing: skip the clock.
      if (result === 'success' && target.consecutiveFailures === 0 && target.ejectedUntil === null) return
      const change = target.record(result, Date.now())
      if (change === 'ejected') {
        app.log.warn({ target: target.url, consecutiveFailures: target.consecutiveFailures, ejectedUntil: new Date(target.ejectedUntil as number).toISOString() }, 'upstream target ejected')
      } else if (change === 'recovered') {
        app.log.info({ target: target.url }, 'upstream target recovered')
      }
    },
    retryAfterSeconds (route) {
      const now = Date.now()
      let soonest = Infinity
      for (const { url } of route.targets) {
        const target = targets.ofRoute(route, url)
        if (target !== undefined) soonest = Math.min(soonest, target.waitMs(now))
      }
      return Number.isFinite(soonest) ? Math.max(1, Math.ceil(soonest / 1000)) : 1
    },
    countRetry () { retries++ },
    targets: () => targets.values(),
    target: (url) => targets.find(url),
    healthCheck: (url) => probers.get(url)
  }

  app.decorate('upstreams', upstreams)
  if (app.hasDecorator('metrics')) registerUpstreamMetrics(app.metrics.registry, upstreams.targets, () => retries)
  app.routeTable.onSwap((routes) => {
    // Targets first: balancers and probers take theirs from it, and it closes the pools left unused.
    targets.sync(routes)
    balancers.sync(routes)
    probers.sync(routes)
  })
  app.addHook('onClose', async () => {
    await probers.stop()
    await pools.close()
  })
}

function validateOptions (options: UpstreamsOptions, passive: PassiveHealthOptions): void {
  const positive = (name: string, value: number | undefined): void => {
    if (value !== undefined && (!Number.isInteger(value) || value < 1)) throw new Error(`upstreams option ${name} must be a positive integer, got ${value}`)
  }
  positive('connectTimeoutMs', options.connectTimeoutMs)
  positive('connectionsPerOrigin', options.connectionsPerOrigin)
  positive('passiveHealth.failures', passive.failures)
  positive('passiveHealth.cooldownMs', passive.cooldownMs)
  positive('passiveHealth.maxCooldownMs', passive.maxCooldownMs)
  if (passive.maxCooldownMs < passive.cooldownMs) throw new Error('upstreams option passiveHealth.maxCooldownMs must be at least passiveHealth.cooldownMs')
}

export default fp(upstreamsPlugin, { name: 'upstreams', dependencies: ['route-table'] })
