import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import { Counter, Gauge } from 'prom-client'
import { Pool } from 'undici'
import { type Balancer, createBalancer } from '../lib/balancer.js'
import { ActiveHealthCheck, DEFAULT_PASSIVE_HEALTH, type PassiveHealthOptions } from '../lib/health-check.js'
import type { Route, RouteHealthCheck } from '../schemas/route.js'
import { targetKey, type UpstreamTls, upstreamTlsOf } from '../lib/upstream-tls.js'
import { type AttemptResult, Target } from '../lib/upstream-target.js'

export { type AttemptResult, Target } from '../lib/upstream-target.js'

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

interface CompiledBalancer {
  signature: string
  balancer: Balancer<Target>
}

const upstreamsPlugin: FastifyPluginAsync<UpstreamsOptions> = async (app, options) => {
  const passive: PassiveHealthOptions = { ...DEFAULT_PASSIVE_HEALTH, ...options.passiveHealth }
  validateOptions(options, passive)
  const pools = new Map<string, Pool>()
  const targets = new Map<string, Target>()
  /** Per route id: the balancer keeps its smooth round-robin state while the route's targets stay the same. */
  const balancers = new Map<string, CompiledBalancer>()
  const probers = new Map<string, { key: string, check: ActiveHealthCheck }>()
  /** The pool key of each target, to close pools no target uses any more. */
  const poolKeys = new WeakMap<Target, string>()
  let retries = 0

  /** One pool per origin and TLS settings: a route's new upstreamTls gets a new pool on its next request. */
  function poolFor (origin: string, tls: UpstreamTls | null): Pool {
    const key = tls === null ? origin : `${origin}#${tls.key}`
    let pool = pools.get(key)
    if (pool === undefined) {
      pool = new Pool(origin, {
        connections: options.connectionsPerOrigin ?? 128,
        connectTimeout: options.connectTimeoutMs ?? 5000,
        keepAliveTimeout: 4000,
        pipelining: 1,
        ...(tls === null ? {} : { connect: tls.connect })
      })
      pools.set(key, pool)
    }
    return pool
  }

  /** Targets are shared by URL, and by TLS settings for https targets of routes with upstreamTls. */
  function targetFor (url: string, tls: UpstreamTls | null = null): Target {
    const key = targetKey(url, tls)
    let target = targets.get(key)
    if (target === undefined) {
      target = new Target(url, poolFor(new URL(url).origin, tls), passive)
      targets.set(key, target)
      poolKeys.set(target, tls === null ? target.origin : `${target.origin}#${tls.key}`)
    }
    return target
  }

  function compile (route: Route): CompiledBalancer {
    const signature = balancerSignature(route)
    const existing = balancers.get(route.id)
    if (existing !== undefined && existing.signature === signature) return existing
    const compiled = {
      signature,
      balancer: createBalancer(route.loadBalancing, route.targets.map(({ url, weight }) => ({ target: targetFor(url, upstreamTlsOf(route, url)), weight })))
    }
    balancers.set(route.id, compiled)
    return compiled
  }

  function sync (routes: readonly Route[]): void {
    const wanted = new Set<string>()
    for (const route of routes) {
      for (const { url } of route.targets) {
        const tls = upstreamTlsOf(route, url)
        wanted.add(targetKey(url, tls))
        targetFor(url, tls)
      }
    }

    const ids = new Set<string>()
    for (const route of routes) {
      ids.add(route.id)
      compile(route)
    }
    for (const id of balancers.keys()) if (!ids.has(id)) balancers.delete(id)

    syncProbers(routes)

    for (const key of targets.keys()) if (!wanted.has(key)) targets.delete(key)
    const livePools = new Set([...targets.values()].map((target) => poolKeys.get(target)))
    for (const [key, pool] of pools) {
      if (!livePools.has(key)) {
        pools.delete(key)
        // close() lets requests still on this pool finish.
        pool.close().catch(() => {})
      }
    }
  }

  /**
   * One prober per target URL per process. When routes sharing a URL configure different
   * checks, the first enabled route (creation order) with a healthCheck decides.
   */
  function syncProbers (routes: readonly Route[]): void {
    const wanted = new Map<string, RouteHealthCheck>()
    const tlsOf = new Map<string, UpstreamTls | null>()
    for (const route of routes) {
      if (!route.enabled || route.healthCheck === null) continue
      for (const { url } of route.targets) {
        if (wanted.has(url)) continue
        wanted.set(url, route.healthCheck)
        tlsOf.set(url, upstreamTlsOf(route, url))
      }
    }
    for (const [url, running] of probers) {
      const config = wanted.get(url)
      if (config === undefined || JSON.stringify(config) !== running.key) {
        probers.delete(url)
        void running.check.stop()
      }
    }
    for (const [url, config] of wanted) {
      if (probers.has(url)) continue
      const check = new ActiveHealthCheck(targetFor(url, tlsOf.get(url) ?? null), config, (target, healthy, reason) => {
        app.log[healthy ? 'info' : 'warn']({ target: target.url, reason }, healthy ? 'active health check: target up' : 'active health check: target down')
      })
      probers.set(url, { key: JSON.stringify(config), check })
      check.start()
    }
  }

  const upstreams: Upstreams = {
    select (route, exclude) {
      const compiled = balancers.get(route.id) ?? compile(route)
      const target = compiled.balancer.pick(Date.now(), exclude)
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
        const target = targets.get(targetKey(url, upstreamTlsOf(route, url)))
        if (target !== undefined) soonest = Math.min(soonest, target.waitMs(now))
      }
      return Number.isFinite(soonest) ? Math.max(1, Math.ceil(soonest / 1000)) : 1
    },
    countRetry () { retries++ },
    targets: () => targets.values(),
    target: (url) => targets.get(url) ?? [...targets.values()].find((target) => target.url === url),
    healthCheck: (url) => probers.get(url)?.check
  }

  app.decorate('upstreams', upstreams)
  if (app.hasDecorator('metrics')) registerMetrics(app, upstreams, () => retries)
  app.routeTable.onSwap(sync)
  app.addHook('onClose', async () => {
    await Promise.all([...probers.values()].map(({ check }) => check.stop()))
    probers.clear()
    await Promise.all([...pools.values()].map((pool) => pool.close()))
  })
}

function balancerSignature (route: Route): string {
  let signature = route.loadBalancing
  if (route.upstreamTls !== null) signature += ` tls=${JSON.stringify(route.upstreamTls)}`
  for (const { url, weight } of route.targets) signature += ` ${weight}*${url}`
  return signature
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

/**
 * Target gauges are read when /metrics is scraped (collect), so the request path only
 * keeps the plain fields it keeps anyway.
 */
function registerMetrics (app: FastifyInstance, upstreams: Upstreams, retries: () => number): void {
  const registers = [app.metrics.registry]
  const perTarget = (name: string, help: string, value: (target: Target) => number): void => {
    // eslint-disable-next-line no-new -- prom-client registers the metric when it is built
    new Gauge({
      name,
      help,
      labelNames: ['target'],
      registers,
      collect () {
        this.reset()
        for (const target of upstreams.targets()) this.set({ target: target.url }, value(target))
      }
    })
  }
  perTarget('gatehouse_upstream_target_healthy', '1 when the target takes requests, 0 while ejected or failing its active check', (target) => target.healthy ? 1 : 0)
  perTarget('gatehouse_upstream_target_in_flight', 'Requests sent to the target and not yet finished', (target) => target.inFlight)
  perTarget('gatehouse_upstream_target_ejected', '1 while the target is ejected by passive health checks (including its half-open trial)', (target) => target.ejectedUntil === null ? 0 : 1)
  perTarget('gatehouse_upstream_target_consecutive_failures', 'Failures in a row (connect errors, resets, timeouts, 5xx)', (target) => target.consecutiveFailures)
  perTarget('gatehouse_upstream_target_active_healthy', 'Active health check verdict: 1 up, 0 down, -1 not probed', (target) => target.activeHealthy === null ? -1 : target.activeHealthy ? 1 : 0)
  // eslint-disable-next-line no-new -- prom-client registers the metric when it is built
  new Counter({
    name: 'gatehouse_upstream_target_ejections_total',
    help: 'Passive-health ejections of the target',
    labelNames: ['target'],
    registers,
    collect () {
      this.reset()
      for (const target of upstreams.targets()) this.inc({ target: target.url }, target.ejectionsTotal)
    }
  })
  // eslint-disable-next-line no-new -- prom-client registers the metric when it is built
  new Counter({
    name: 'gatehouse_upstream_retries_total',
    help: 'Requests sent again to another target after a connection failure',
    registers,
    collect () {
      this.reset()
      this.inc(retries())
    }
  })
}

export default fp(upstreamsPlugin, { name: 'upstreams', dependencies: ['route-table'] })
