import type { Kysely } from 'kysely'

// Frozen in time: never import application code here.
// The W3C trace id of each request row (docs/logging.md "Tracing"); null for admin rows and older rows.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('audit_log').addColumn('trace_id', 'text').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('audit_log').dropColumn('trace_id').execute()
}
