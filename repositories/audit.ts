import type { Kysely } from 'kysely'
import type { Database, NewAuditLogRow } from './database.js'

export async function insertAuditRows (db: Kysely<Database>, rows: NewAuditLogRow[]): Promise<void> {
  await db.transaction().execute(async (trx) => {
    // SQLite caps bound parameters per statement; 15 columns × 60 rows stays far below it.
    for (let i = 0; i < rows.length; i += 60) {
      await trx.insertInto('audit_log').values(rows.slice(i, i + 60)).execute()
    }
  })
}
