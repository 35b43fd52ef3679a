import type { Kysely, Transaction } from 'kysely'
import type { Database, FilterRow } from './database.js'
import type { Filter } from '../schemas/filter.js'

type Executor = Kysely<Database> | Transaction<Database>

function rowToFilter (row: FilterRow): Filter {
  return {
    id: row.id,
    action: row.action as Filter['action'],
    ip: row.ip,
    path: row.path,
    expiresAt: row.expires_at,
    reason: row.reason,
    createdAt: row.created_at
  }
}

function filterToRow (filter: Filter): FilterRow {
  return {
    id: filter.id,
    action: filter.action,
    ip: filter.ip,
    path: filter.path,
    expires_at: filter.expiresAt,
    reason: filter.reason,
    created_at: filter.createdAt
  }
}

export async function listFilters (db: Executor, page: { limit: number, offset: number }): Promise<{ items: Filter[], total: number }> {
  const rows = await db.selectFrom('filters').selectAll().orderBy('created_at').orderBy('id').limit(page.limit).offset(page.offset).execute()
  const { total } = await db.selectFrom('filters').select((eb) => eb.fn.countAll<number>().as('total')).executeTakeFirstOrThrow()
  return { items: rows.map(rowToFilter), total: Number(total) }
}

export async function listAllFilters (db: Executor): Promise<Filter[]> {
  const rows = await db.selectFrom('filters').selectAll().orderBy('created_at').orderBy('id').execute()
  return rows.map(rowToFilter)
}

export async function findFilter (db: Executor, id: string): Promise<Filter | undefined> {
  const row = await db.selectFrom('filters').selectAll().where('id', '=', id).executeTakeFirst()
  return row === undefined ? undefined : rowToFilter(row)
}

export async function insertFilters (db: Executor, filters: Filter[]): Promise<void> {
  // SQLite caps bound parameters per statement; 7 columns × 100 rows stays far below it.
  for (let i = 0; i < filters.length; i += 100) {
    await db.insertInto('filters').values(filters.slice(i, i + 100).map(filterToRow)).execute()
  }
}

export async function deleteFilter (db: Executor, id: string): Promise<boolean> {
  const result = await db.deleteFrom('filters').where('id', '=', id).executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

export async function deleteAllFilters (db: Executor): Promise<void> {
  await db.deleteFrom('filters').execute()
}
