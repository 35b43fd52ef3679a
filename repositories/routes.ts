import type { Kysely, Transaction } from 'kysely'
import type { Database, RouteRow } from './database.js'
import type { Route } from '../schemas/route.js'
import { TRANSFORM_DEFAULTS } from '../schemas/transforms.js'

type Executor = Kysely<Database> | Transaction<Database>

/** Everything of a route except the columns that have their own place. */
type RouteSpec = Omit<Route, 'id' | 'name' | 'path' | 'enabled' | 'createdAt' | 'updatedAt'>

/** Fields added after a route may have been stored take their defaults. */
const ADDED_FIELD_DEFAULTS: Partial<RouteSpec> = { httpsRedirect: false, upstreamTls: null, websocket: false }

export function rowToRoute (row: RouteRow): Route {
  const spec = { ...ADDED_FIELD_DEFAULTS, ...JSON.parse(row.spec) as Partial<RouteSpec> } as RouteSpec
  return {
    id: row.id,
    name: row.name,
    path: row.path,
    // Routes stored before a field existed read as its default.
    ...TRANSFORM_DEFAULTS,
    ...spec,
    // Rows written before the field existed.
    cache: spec.cache ?? null,
    enabled: row.enabled === 1,
    createdAt: row.created_at,
    updatedAt: row.updated_at
  }
}

function routeToRow (route: Route): RouteRow {
  const { id, name, path, enabled, createdAt, updatedAt, ...spec } = route
  return { id, name, path, enabled: enabled ? 1 : 0, spec: JSON.stringify(spec), created_at: createdAt, updated_at: updatedAt }
}

export async function listRoutes (db: Executor, page: { limit: number, offset: number }): Promise<{ items: Route[], total: number }> {
  const rows = await db.selectFrom('routes').selectAll().orderBy('created_at').orderBy('id').limit(page.limit).offset(page.offset).execute()
  const { total } = await db.selectFrom('routes').select((eb) => eb.fn.countAll<number>().as('total')).executeTakeFirstOrThrow()
  return { items: rows.map(rowToRoute), total: Number(total) }
}

export async function listAllRoutes (db: Executor): Promise<Route[]> {
  const rows = await db.selectFrom('routes').selectAll().orderBy('created_at').orderBy('id').execute()
  return rows.map(rowToRoute)
}

/** By id or, failing that, by name (docs/admin-api.md "Common rules": `:id` accepts either). */
export async function findRoute (db: Executor, idOrName: string): Promise<Route | undefined> {
  const row = await db.selectFrom('routes').selectAll()
    .where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]))
    .orderBy((eb) => eb.case().when('id', '=', idOrName).then(0).else(1).end())
    .executeTakeFirst()
  return row === undefined ? undefined : rowToRoute(row)
}

export async function routeNameTaken (db: Executor, name: string, exceptId?: string): Promise<boolean> {
  let query = db.selectFrom('routes').select('id').where('name', '=', name)
  if (exceptId !== undefined) query = query.where('id', '!=', exceptId)
  return (await query.executeTakeFirst()) !== undefined
}

export async function insertRoute (db: Executor, route: Route): Promise<void> {
  await db.insertInto('routes').values(routeToRow(route)).execute()
}

export async function updateRoute (db: Executor, route: Route): Promise<void> {
  const { id, ...row } = routeToRow(route)
  await db.updateTable('routes').set(row).where('id', '=', id).execute()
}

export async function deleteRoute (db: Executor, id: string): Promise<boolean> {
  const result = await db.deleteFrom('routes').where('id', '=', id).executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}
