import type { Kysely } from 'kysely'
import type { Database, InstanceRow, NewInstanceRow } from './database.js'

/** The heartbeat: this instance's row, inserted or rewritten. */
export async function upsertInstance (db: Kysely<Database>, row: NewInstanceRow): Promise<void> {
  const { instance_id: _id, ...changes } = row
  await db.insertInto('instances').values(row)
    .onConflict((oc) => oc.column('instance_id').doUpdateSet(changes))
    .execute()
}

/** Rows of instances not seen since `before` (ISO-8601) are removed. */
export async function deleteInstancesNotSeenSince (db: Kysely<Database>, before: string): Promise<void> {
  await db.deleteFrom('instances').where('last_seen_at', '<', before).execute()
}

/** Every instance seen at or after `since`, without their traffic series. */
export async function listInstances (db: Kysely<Database>, since: string): Promise<Array<Omit<InstanceRow, 'series'>>> {
  return await db.selectFrom('instances')
    .select(['instance_id', 'host', 'pid', 'version', 'started_at', 'last_seen_at', 'config_revision', 'requests_per_second'])
    .where('last_seen_at', '>=', since)
    .orderBy('started_at').orderBy('instance_id')
    .execute()
}

/** The stored traffic series of every instance seen at or after `since`. */
export async function listInstanceSeries (db: Kysely<Database>, since: string): Promise<Array<Pick<InstanceRow, 'instance_id' | 'series'>>> {
  return await db.selectFrom('instances')
    .select(['instance_id', 'series'])
    .where('last_seen_at', '>=', since)
    .orderBy('instance_id')
    .execute()
}
