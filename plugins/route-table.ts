import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { RouteMatcher } from '../lib/route-matcher.js'
import { listAllRoutes } from '../repositories/routes.js'
import type { Route } from '../schemas/route.js'

/**
 * The compiled route table. Requests read `current` (one property load) and never touch
 * the database; reload() compiles a new matcher off to the side and swaps it in whole,
 * so a request sees either the old table or the new one, never half of each.
 */
export interface RouteTable {
  readonly matcher: RouteMatcher
  /** Every stored route, enabled or not, in creation order. */
  readonly routes: readonly Route[]
  /** Bumped on every swap; /admin/reload reports it. */
  readonly generation: number
  reload: () => Promise<void>
  /** Called after every swap with the new routes (upstream pools, health checks …). */
  onSwap: (listener: (routes: readonly Route[]) => void) => void
}

declare module 'fastify' {
  interface FastifyInstance {
    routeTable: RouteTable
  }
}

const routeTablePlugin: FastifyPluginAsync = async (app) => {
  let matcher = new RouteMatcher([])
  let routes: readonly Route[] = []
  let generation = 0
  const listeners: Array<(routes: readonly Route[]) => void> = []

  const table: RouteTable = {
    get matcher () { return matcher },
    get routes () { return routes },
    get generation () { return generation },
    async reload () {
      const loaded = Object.freeze(await listAllRoutes(app.db))
      const compiled = new RouteMatcher(loaded)
      matcher = compiled
      routes = loaded
      generation++
      for (const listener of listeners) listener(loaded)
    },
    onSwap (listener) {
      listeners.push(listener)
      listener(routes)
    }
  }
  app.decorate('routeTable', table)
  await app.configChanges.onChange('routes', table.reload)
}

export default fp(routeTablePlugin, { name: 'route-table', dependencies: ['db', 'config-changes'] })
