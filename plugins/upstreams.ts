import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import { Counter, Gauge } from 'prom-client'
import { Pool } from 'undici'
import { type Balanceable, type Balancer, createBalancer } from '../lib/balancer.js'
import {
  ActiveHealthCheck,
  DEFAULT_PASSIVE_HEALTH,
  ejectionCooldownMs,
  type PassiveHealthOptions,
  type ProbedTarget
} from '../lib/health-check.js'
import type { Route, RouteHealthCheck } from '../schemas/route.js'

/** How one attempt on a target ended, for passive health. */
export type AttemptResult =
  /** An answer below 500. */
  | 'success'
  /** Connect error, reset, timeout, or a 5xx answer. */
  | 'failure'
  /** Ended for a reason that says nothing about the target (client gone, body too large). */
  | 'aborted'

/**
 * One upstream target URL, shared by every route that lists it; its state (in flight,
 * passive and active health) survives route edits that keep the URL. Every state field
 * is a plain field so /admin/status and /metrics read it as it is.
 */
export class Target implements Balanceable, ProbedTarget {
  readonly origin: string
  /** The target URL's own path without trailing slash ('' for none): a prefix of every forwarded path. */
  readonly basePath: string
  inFlight = 0
  /** False while ejected (passive) or marked down by its active check. */
  healthy = true
  /** Failures in a row (connect errors, resets, timeouts, 5xx); any success resets it. */
  consecutiveFailures = 0
  /** Epoch ms the current ejection ends; after it, one trial request decides (half-open). null: not ejected. */
  ejectedUntil: number | null = null
  /** True while the one half-open trial request is under way. */
  trialInFlight = false
  /** Ejections in a row without a lasting recovery; grows the cool-down. */
  ejectionStreak = 0
  /** Ejections since the target was first used, for /metrics. */
  ejectionsTotal = 0
  /** The active check's verdict; null when no active check probes this target. */
  activeHealthy: boolean | null = null
  /** The active check's interval, for Retry-After while it says down. */
  probeIntervalMs: number | null = null
  private recoveredAt = 0

  constructor (readonly url: string, readonly pool: Pool, private readonly passive: Readonly<PassiveHealthOptions>) {
    const parsed = new URL(url)
    this.origin = parsed.origin
    this.basePath = parsed.pathname === '/' ? '' : parsed.pathname.replace(/\/+$/, '')
  }

  /** May a request be sent here now? A target past its cool-down admits exactly one (the trial). */
  selectable (now: number): boolean {
    if (this.activeHealthy === false) return false
    return this.ejectedUntil === null || (now >= this.ejectedUntil && !this.trialInFlight)
  }

  /** Called for the chosen target; marks a half-open trial. */
  chosen (): void {
    if (this.ejectedUntil !== null) this.trialInFlight = true
  }

  /** Records one attempt's outcome; returns 'ejected' or 'recovered' when that changed the state. */
  record (result: AttemptResult, now: number): 'ejected' | 'recovered' | null {
    if (result === 'aborted') {
      this.trialInFlight = false
      return null
    }
    if (result === 'success') {
      this.consecutiveFailures = 0
      if (this.ejectedUntil === null) return null
      if (!this.trialInFlight && now < this.ejectedUntil) return null // a request sent before the ejection
      this.ejectedUntil = null
      this.trialInFlight = false
      this.recoveredAt = now
      this.refreshHealthy()
      return 'recovered'
    }
    this.consecutiveFailures++
    if (this.trialInFlight) {
      this.trialInFlight = false
      this.eject(now)
      return 'ejected'
    }
    if (this.ejectedUntil === null && this.consecutiveFailures >= this.passive.failures) {
      this.eject(now)
      return 'ejected'
    }
    return null
  }

  setActiveHealth (healthy: boolean | null, intervalMs: number | null): void {
    const cameBack = healthy === true && this.activeHealthy === false
    this.activeHealthy = healthy
    this.probeIntervalMs = intervalMs
    // A target the active check sees come back is given a clean slate, as Kong does:
    // the probe is evidence the passive ejection's reason is gone.
    if (cameBack) {
      this.ejectedUntil = null
      this.trialInFlight = false
      this.consecutiveFailures = 0
      this.ejectionStreak = 0
    }
    this.refreshHealthy()
  }

  /** How long until this target may take a request again (0: now). */
  waitMs (now: number): number {
    if (this.activeHealthy === false) return this.probeIntervalMs ?? 1000
    if (this.ejectedUntil === null) return 0
    return Math.max(0, this.ejectedUntil - now)
  }

  /** What /admin/status shows (the pool is not data). */
  toJSON (): Record<string, unknown> {
    return {
      url: this.url,
      healthy: this.healthy,
      inFlight: this.inFlight,
      consecutiveFailures: this.consecutiveFailures,
      ejectedUntil: this.ejectedUntil === null ? null : new Date(this.ejectedUntil).toISOString(),
      halfOpen: this.trialInFlight,
      ejections: this.ejectionsTotal,
      activeHealthy: this.activeHealthy
    }
  }

  private eject (now: number): void {
    if (this.recoveredAt !== 0 && now - this.recoveredAt > this.passive.maxCooldownMs) this.ejectionStreak = 0
    this.ejectionStreak++
    this.ejectionsTotal++
    this.ejectedUntil = now + ejectionCooldownMs(this.passive, this.ejectionStreak)
    this.refreshHealthy()
  }

  private refreshHealthy (): void {
    this.healthy = this.activeHealthy !== false && this.ejectedUntil === null
  }
}

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
  let retries = 0

  function poolFor (origin: string): Pool {
    let pool = pools.get(origin)
    if (pool === undefined) {
      pool = new Pool(origin, {
        connections: options.connectionsPerOrigin ?? 128,
        connectTimeout: options.connectTimeoutMs ?? 5000,
        keepAliveTimeout: 4000,
        pipelining: 1
      })
      pools.set(origin, pool)
    }
    return pool
  }

  function targetFor (url: string): Target {
    let target = targets.get(url)
    if (target === undefined) {
      target = new Target(url, poolFor(new URL(url).origin), passive)
      targets.set(url, target)
    }
    return target
  }

  function compile (route: Route): CompiledBalancer {
    const signature = balancerSignature(route)
    const existing = balancers.get(route.id)
    if (existing !== undefined && existing.signature === signature) return existing
    const compiled = {
      signature,
      balancer: createBalancer(route.loadBalancing, route.targets.map(({ url, weight }) => ({ target: targetFor(url), weight })))
    }
    balancers.set(route.id, compiled)
    return compiled
  }

  function sync (routes: readonly Route[]): void {
    const wanted = new Set<string>()
    for (const route of routes) for (const { url } of route.targets) wanted.add(url)
    for (const url of wanted) targetFor(url)

    const ids = new Set<string>()
    for (const route of routes) {
      ids.add(route.id)
      compile(route)
    }
    for (const id of balancers.keys()) if (!ids.has(id)) balancers.delete(id)

    syncProbers(routes)

    for (const url of targets.keys()) if (!wanted.has(url)) targets.delete(url)
    const liveOrigins = new Set([...targets.values()].map((target) => target.origin))
    for (const [origin, pool] of pools) {
      if (!liveOrigins.has(origin)) {
        pools.delete(origin)
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
    for (const route of routes) {
      if (!route.enabled || route.healthCheck === null) continue
      for (const { url } of route.targets) if (!wanted.has(url)) wanted.set(url, route.healthCheck)
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
      const check = new ActiveHealthCheck(targetFor(url), config, (target, healthy, reason) => {
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
        const target = targets.get(url)
        if (target !== undefined) soonest = Math.min(soonest, target.waitMs(now))
      }
      return Number.isFinite(soonest) ? Math.max(1, Math.ceil(soonest / 1000)) : 1
    },
    countRetry () { retries++ },
    targets: () => targets.values(),
    target: (url) => targets.get(url),
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
