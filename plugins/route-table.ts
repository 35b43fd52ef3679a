import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import type { Kysely } from 'kysely'
import { type CompileStage, compilePipeline, type RoutePipeline, type StageName } from '../lib/pipeline.js'
import { routesSection } from '../lib/route-config-section.js'
import { RouteMatcher } from '../lib/route-matcher.js'
import type { Database } from '../repositories/database.js'
import { listAllRoutes } from '../repositories/routes.js'
import type { Route } from '../schemas/route.js'

/**
 * The compiled route table. Requests read `current` (one property load) and never touch
 * the database; reload() compiles a new matcher and every route's pipeline (lib/pipeline.ts)
 * off to the side and swaps them in whole, so a request sees either the old table or the
 * new one, never half of each.
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
  /**
   * A policy's compile step: from now on every route's pipeline gets the stage it returns,
   * in STAGE_ORDER (lib/pipeline.ts) whatever the order of registration. Recompiles the live table.
   */
  addStage: (name: StageName, compile: CompileStage) => void
  /** The stages a route runs, compiled at the last swap. */
  pipelineOf: (route: Route) => RoutePipeline
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
  const compilers = new Map<StageName, CompileStage>()
  let pipelines = new Map<Route, RoutePipeline>()
  const listeners: Array<(routes: readonly Route[]) => void> = []
  // Reloads can overlap (the config poll, POST /admin/reload, an admin change); each read
  // takes a ticket, and a read that finishes after a later-started one has been swapped in
  // is dropped, so an older table never replaces a newer one.
  let started = 0
  let swapped = 0

  function compileAll (of: readonly Route[]): Map<Route, RoutePipeline> {
    const compiled = new Map<Route, RoutePipeline>()
    for (const route of of) compiled.set(route, compile(route))
    return compiled
  }

  function compile (route: Route): RoutePipeline {
    return compilePipeline(route, compilers, (err) => { app.log.error({ err, route: route.name }, 'a route stage failed to compile; the route answers 503 until fixed') })
  }

  function install (loaded: readonly Route[]): void {
    const frozen = Object.freeze(loaded)
    const compiled = compileAll(frozen)
    matcher = new RouteMatcher(frozen)
    routes = frozen
    pipelines = compiled
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
    },
    addStage (name, compileStage) {
      if (compilers.has(name)) throw new Error(`route stage ${name} is registered twice`)
      compilers.set(name, compileStage)
      pipelines = compileAll(routes)
    },
    pipelineOf (route) {
      // A route not in the live table: one a request matched just before a swap, whose
      // pipeline the request already holds, or an admin view of a route being replaced.
      return pipelines.get(route) ?? compile(route)
    }
  }
  app.decorate('routeTable', table)
  // The snapshot saves what was swapped in last (a reload dropped as out of date saves that).
  // The "routes" part of /admin/config and of every revision, registered beside the table it fills.
  app.configSections.add(routesSection(app.config))
  await app.configChanges.track('routes', async () => { await table.reload(); return routes }, (saved: readonly Route[]) => { install(saved) })
}

export default fp(routeTablePlugin, { name: 'route-table', dependencies: ['db', 'config-changes', 'config-sections'] })
