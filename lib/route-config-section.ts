import type { ConfigSection } from './config-section.js'
import { GatewayError } from './errors.js'
import { buildRoute, cacheStoreProblem, type RouteDefaults, routeProblem } from './route-input.js'
import { keepsStoredSecret, publicRoute, withStoredSecret } from './route-secret.js'
import { deleteRoute, insertRoute, listAllRoutes, updateRoute } from '../repositories/routes.js'
import { type Route, type RouteConfigItem, RouteConfigItemSchema } from '../schemas/route.js'

/**
 * The "routes" part of GET/PUT /admin/config. The document carries no secrets
 * (docs/admin-api.md "Whole configuration"): a JWT route's HS256 secret is exported as null with secretSet, and on import a
 * JWT route with neither secret nor jwksUrl keeps the secret stored under its name — as
 * consumers keep their credentials.
 */
export function routesSection (config: RouteDefaults & { readonly redisUrl?: string | null }): ConfigSection<RouteConfigItem> {
  const section: ConfigSection<RouteConfigItem> = {
    name: 'routes',
    kind: 'route',
    itemSchema: RouteConfigItemSchema,
    identify: (item) => item.name,
    // A JWT route's HS256 secret, by route name: the document shows it as null with secretSet.
    async exportSecrets (db) {
      const secrets: Record<string, string> = {}
      for (const route of await listAllRoutes(db)) {
        if (route.auth.type === 'jwt' && route.auth.secret !== null) secrets[route.name] = route.auth.secret
      }
      return secrets
    },
    // The revision's secret goes back where its document says "keep the stored one".
    async restore (trx, items, secrets) {
      await section.replaceAll(trx, items.map((item) => {
        const secret = secrets[item.name]
        if (typeof secret !== 'string' || !keepsStoredSecret(item.auth)) return item
        const { secretSet: _answerOnly, ...auth } = item.auth as typeof item.auth & { secretSet?: boolean }
        return { ...item, auth: { ...auth, secret } }
      }))
    },
    exportItems: async (db) => (await listAllRoutes(db)).map(publicRoute),
    problem (items) {
      const names = new Map<string, number>()
      const ids = new Map<string, number>()
      for (const [index, item] of items.entries()) {
        const { id, createdAt: _c, updatedAt: _u, ...input } = item
        // Other fields are checked now; whether a stored secret exists is checked in replaceAll.
        const problem = routeProblem(keepsStoredSecret(input.auth) ? { ...input, auth: { type: 'none' } } : input, `routes/${index}`) ??
          cacheStoreProblem(input, (config.redisUrl ?? null) !== null, `routes/${index}`)
        if (problem !== null) return problem
        if (names.has(item.name)) return `routes/${index}/name "${item.name}" is already used by routes/${names.get(item.name)}`
        names.set(item.name, index)
        if (id !== undefined) {
          if (ids.has(id)) return `routes/${index}/id "${id}" is already used by routes/${ids.get(id)}`
          ids.set(id, index)
        }
      }
      return null
    },
    async replaceAll (trx, items) {
      const existing = new Map((await listAllRoutes(trx)).map((route) => [route.name, route]))
      const kept = new Set(items.filter((item) => existing.has(item.name)).map((item) => (existing.get(item.name) as Route).id))
      const wanted = new Set(items.map((item) => item.name))
      for (const route of existing.values()) {
        if (!wanted.has(route.name)) await deleteRoute(trx, route.id)
      }
      for (const [index, item] of items.entries()) {
        const { id, createdAt: _c, updatedAt: _u, ...sent } = item
        const before = existing.get(item.name)
        const input = withStoredSecret(sent, before)
        if (keepsStoredSecret(input.auth)) {
          throw new GatewayError(400, 'GW_VALIDATION', `body/routes/${index}/auth must set exactly one of secret or jwksUrl (no stored secret to keep)`)
        }
        if (before === undefined) {
          if (id !== undefined && kept.has(id)) {
            throw new GatewayError(400, 'GW_VALIDATION', `body/routes/${index}/id "${id}" belongs to another route that stays`)
          }
          const now = new Date().toISOString()
          await insertRoute(trx, buildRoute(input, config, id === undefined ? undefined : { id, createdAt: now }))
          continue
        }
        const after = buildRoute(input, config, before)
        if (sameRoute(before, after)) continue
        await updateRoute(trx, after)
      }
    }
  }
  return section
}

/** Equal in every field but updatedAt, whatever the order of keys (stored JSON keeps its own order). */
function sameRoute (a: Route, b: Route): boolean {
  return canonical({ ...a, updatedAt: '' }) === canonical({ ...b, updatedAt: '' })
}

function canonical (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}
