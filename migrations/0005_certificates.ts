import type { Kysely } from 'kysely'

// Frozen in time: never import application code here.
// One row per SNI in certificate_snis makes "an SNI belongs to one certificate" a unique
// constraint, so two instances creating certificates at once cannot both take it.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('certificates')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('cert', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute()

  await db.schema.createTable('certificate_snis')
    .addColumn('sni', 'text', (c) => c.primaryKey())
    .addColumn('certificate_id', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('certificate_snis_certificate_id').on('certificate_snis').column('certificate_id').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('certificate_snis').execute()
  await db.schema.dropTable('certificates').execute()
}
