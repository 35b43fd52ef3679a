import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Pool } from 'undici'
import type { Route } from '../schemas/route.js'

/** One upstream target URL; its state survives route edits that keep the URL. */
export class Target {
  readonly origin: string
  /** The target URL's own path without trailing slash ('' for none): a prefix of every forwarded path. */
  readonly basePath: string
  inFlight = 0
  healthy = true

  constructor (readonly url: string, readonly pool: Pool) {
    const parsed = new URL(url)
    this.origin = parsed.origin
    this.basePath = parsed.pathname === '/' ? '' : parsed.pathname.replace(/\/+$/, '')
  }
}

export interface Upstreams {
  /** Pick a target for this route, skipping `exclude`; null when none is usable. */
  select: (route: Route, exclude?: ReadonlySet<Target>) => Target | null
  /** The outcome of one attempt, for passive health checks. */
  report: (target: Target, result: 'success' | 'failure') => void
  /** Every target currently used by some route. */
  targets: () => Iterable<Target>
  target: (url: string) => Target | undefined
}

declare module 'fastify' {
  interface FastifyInstance {
    upstreams: Upstreams
  }
}

export interface UpstreamsOptions {
  connectTimeoutMs?: number
  connectionsPerOrigin?: number
}

const upstreamsPlugin: FastifyPluginAsync<UpstreamsOptions> = async (app, options) => {
  const pools = new Map<string, Pool>()
  const targets = new Map<string, Target>()
  const cursors = new Map<string, number>()

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

  function sync (routes: readonly Route[]): void {
    const wanted = new Set<string>()
    for (const route of routes) for (const { url } of route.targets) wanted.add(url)
    for (const url of wanted) {
      if (!targets.has(url)) targets.set(url, new Target(url, poolFor(new URL(url).origin)))
    }
    for (const [url, target] of targets) {
      if (!wanted.has(url)) targets.delete(url)
      void target
    }
    const liveOrigins = new Set([...targets.values()].map((target) => target.origin))
    for (const [origin, pool] of pools) {
      if (!liveOrigins.has(origin)) {
        pools.delete(origin)
        pool.close().catch(() => {})
      }
    }
  }

  const upstreams: Upstreams = {
    select (route, exclude) {
      const count = route.targets.length
      const start = cursors.get(route.id) ?? 0
      cursors.set(route.id, start + 1)
      for (let i = 0; i < count; i++) {
        const target = targets.get(route.targets[(start + i) % count].url)
        if (target !== undefined && target.healthy && exclude?.has(target) !== true) return target
      }
      return null
    },
    report () {},
    targets: () => targets.values(),
    target: (url) => targets.get(url)
  }

  app.decorate('upstreams', upstreams)
  app.routeTable.onSwap(sync)
  app.addHook('onClose', async () => {
    await Promise.all([...pools.values()].map((pool) => pool.close()))
  })
}

export default fp(upstreamsPlugin, { name: 'upstreams', dependencies: ['route-table'] })
