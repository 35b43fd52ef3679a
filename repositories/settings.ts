import type { Kysely } from 'kysely'
import type { Database } from './database.js'

export async function getSetting (db: Kysely<Database>, key: string): Promise<string | undefined> {
  const row = await db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirst()
  return row?.value
}

/** false when another process stored the key first. */
export async function putSettingIfAbsent (db: Kysely<Database>, key: string, value: string): Promise<boolean> {
  const result = await db.insertInto('settings').values({ key, value }).onConflict((oc) => oc.column('key').doNothing()).executeTakeFirst()
  return Number(result.numInsertedOrUpdatedRows ?? 0) > 0
}
