import type { Kysely, Transaction } from 'kysely'
import type { Database } from './database.js'

type Executor = Kysely<Database> | Transaction<Database>

export interface CachePurge {
  id: number
  routeId: string | null
  pathPrefix: string | null
}

/** Kept this long: every instance reads new rows within a second. */
const KEEP_MS = 3_600_000

/** Records a purge for the other instances and forgets purges older than an hour. */
export async function insertCachePurge (db: Executor, routeId: string | null, pathPrefix: string | null): Promise<number> {
  const now = Date.now()
  await db.deleteFrom('cache_purges').where('created_at', '<', new Date(now - KEEP_MS).toISOString()).execute()
  const row = await db.insertInto('cache_purges')
    .values({ route_id: routeId, path_prefix: pathPrefix, created_at: new Date(now).toISOString() })
    .returning('id').executeTakeFirstOrThrow()
  return Number(row.id)
}

/** Purges recorded after `afterId`, oldest first. */
export async function listCachePurgesAfter (db: Executor, afterId: number): Promise<CachePurge[]> {
  const rows = await db.selectFrom('cache_purges').select(['id', 'route_id', 'path_prefix']).where('id', '>', afterId).orderBy('id').execute()
  return rows.map((row) => ({ id: Number(row.id), routeId: row.route_id, pathPrefix: row.path_prefix }))
}

/** The newest purge id, 0 when none. */
export async function lastCachePurgeId (db: Executor): Promise<number> {
  const row = await db.selectFrom('cache_purges').select((eb) => eb.fn.max('id').as('id')).executeTakeFirst()
  return row?.id === null || row?.id === undefined ? 0 : Number(row.id)
}
