import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import type { Kysely } from 'kysely'
import { RouteMatcher } from '../lib/route-matcher.js'
import type { Database } from '../repositories/database.js'
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

export interface RouteTableOptions {
  /** Reads every stored route; tests substitute it to control timing. */
  load?: (db: Kysely<Database>) => Promise<Route[]>
}

const routeTablePlugin: FastifyPluginAsync<RouteTableOptions> = async (app, options) => {
  const load = options.load ?? listAllRoutes
  let matcher = new RouteMatcher([])
  let routes: readonly Route[] = []
  let generation = 0
  const listeners: Array<(routes: readonly Route[]) => void> = []
  // Reloads can overlap (the config poll, POST /admin/reload, an admin change); each read
  // takes a ticket, and a read that finishes after a later-started one has been swapped in
  // is dropped, so an older table never replaces a newer one.
  let started = 0
  let swapped = 0

  function install (loaded: readonly Route[]): void {
    const frozen = Object.freeze(loaded)
    matcher = new RouteMatcher(frozen)
    routes = frozen
    generation++
    // Every listener runs even when one fails: a half-notified swap would leave, e.g., the
    // auth stage compiled for the old routes while requests already match the new ones.
    for (const listener of listeners) {
      try {
        listener(frozen)
      } catch (err) {
        app.log.error({ err }, 'a route table listener failed')
      }
    }
  }

  const table: RouteTable = {
    get matcher () { return matcher },
    get routes () { return routes },
    get generation () { return generation },
    async reload () {
      const ticket = ++started
      const loaded = await load(app.db)
      if (ticket < swapped) return
      swapped = ticket
      install(loaded)
    },
    onSwap (listener) {
      listeners.push(listener)
      listener(routes)
    }
  }
  app.decorate('routeTable', table)
  // The snapshot saves what was swapped in last (a reload dropped as out of date saves that).
  await app.configChanges.track('routes', async () => { await table.reload(); return routes }, (saved: readonly Route[]) => { install(saved) })
}

export default fp(routeTablePlugin, { name: 'route-table', dependencies: ['db', 'config-changes'] })
