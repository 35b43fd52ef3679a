import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { randomUUID } from 'node:crypto'
import type { GatewayContext } from '../lib/gateway-context.js'
import { reject } from '../lib/gateway-reply.js'
import { canonicalFilter, FilterSet, filterProblem } from '../lib/ip-filters.js'
import { deleteAllFilters, insertFilters, listAllFilters } from '../repositories/filters.js'
import { type Filter, type FilterConfigItem, FilterConfigItemSchema } from '../schemas/filter.js'

/**
 * IP/path allow and deny lists for proxied traffic (docs/policies.md "Filters"). The rules
 * live in the `filters` table; every change (here or on another instance) recompiles them
 * into a FilterSet that requests read without touching the database. The proxy checks it right
 * after the gateway context exists and before route matching (docs/policies.md, top), for every
 * proxied request; the reserved endpoints never see it.
 */
export interface Filters {
  /** The proxy's check after the request context exists: true when it refused the request (403). */
  refused: (reply: FastifyReply, context: GatewayContext) => boolean
  readonly current: FilterSet
  /** Every stored rule, expired or not, in creation order. */
  readonly rules: readonly Filter[]
}

declare module 'fastify' {
  interface FastifyInstance {
    filters: Filters
  }
}

const filtersPlugin: FastifyPluginAsync = async (app) => {
  let rules: readonly Filter[] = []
  let current = new FilterSet([])
  let cleanup: NodeJS.Timeout | null = null

  function install (loaded: readonly Filter[]): void {
    rules = Object.freeze(loaded)
    current = new FilterSet(loaded)
    scheduleCleanup()
  }

  // Expired rules already stop matching at lookup time; this recompile only drops them so
  // lookups stay lean. It never runs on the request path.
  function scheduleCleanup (): void {
    if (cleanup !== null) clearTimeout(cleanup)
    cleanup = null
    const now = Date.now()
    let next = Infinity
    for (const rule of rules) {
      if (rule.expiresAt === null) continue
      const at = Date.parse(rule.expiresAt)
      if (at > now && at < next) next = at
    }
    if (next === Infinity) return
    cleanup = setTimeout(() => {
      cleanup = null
      current = new FilterSet(rules.filter((rule) => rule.expiresAt === null || Date.parse(rule.expiresAt) > Date.now()))
      scheduleCleanup()
    }, Math.min(next - now + 1, 2 ** 31 - 1))
    cleanup.unref()
  }

  function refused (reply: FastifyReply, context: GatewayContext): boolean {
    const set = current
    if (set.empty) return false
    const refusal = set.check(context.clientIp, context.path, Date.now())
    if (refusal === null) return false
    reject(reply, context, 403, 'blocked', refusal)
    return true
  }

  app.decorate('filters', {
    refused,
    get current () { return current },
    get rules () { return rules }
  } satisfies Filters)

  app.addHook('onClose', async () => {
    if (cleanup !== null) clearTimeout(cleanup)
  })

  await app.configChanges.track('filters', async () => {
    const loaded = await listAllFilters(app.db)
    install(loaded)
    return loaded
  }, install)

  app.configSections.add<FilterConfigItem>({
    name: 'filters',
    kind: 'filter',
    itemSchema: FilterConfigItemSchema,
    // A filter has no name: its rule is what a diff pairs ("deny 10.0.0.0/8 /api").
    identify: (item) => `${item.action} ${item.ip ?? 'any-ip'} ${item.path ?? 'any-path'}`,
    exportItems: async (db) => (await listAllFilters(db)).map((filter) => ({ ...filter })),
    problem (items) {
      const ids = new Set<string>()
      for (const [index, item] of items.entries()) {
        const problem = filterProblem(withDefaults(item), `filters/${index}`)
        if (problem !== null) return problem
        if (item.id !== undefined) {
          if (ids.has(item.id)) return `filters/${index}/id "${item.id}" appears twice`
          ids.add(item.id)
        }
      }
      return null
    },
    async replaceAll (trx, items) {
      await deleteAllFilters(trx)
      const now = new Date().toISOString()
      await insertFilters(trx, items.map((item) => buildFilter(item, now)))
    }
  })
}

/** A validated input (or config item) → the stored rule. */
export function buildFilter (input: FilterConfigItem, now = new Date().toISOString()): Filter {
  const canonical = canonicalFilter(withDefaults(input))
  return {
    id: input.id ?? randomUUID(),
    action: canonical.action,
    ip: canonical.ip,
    path: canonical.path,
    expiresAt: canonical.expiresAt,
    reason: canonical.reason,
    createdAt: input.createdAt ?? now
  }
}

/** Config documents may omit the nullable fields; Ajv does not fill defaults inside unions. */
function withDefaults (item: FilterConfigItem): FilterConfigItem {
  return { ...item, ip: item.ip ?? null, path: item.path ?? null, expiresAt: item.expiresAt ?? null, reason: item.reason ?? '' }
}

export default fp(filtersPlugin, { name: 'filters', dependencies: ['db', 'config-changes', 'config-sections'] })
