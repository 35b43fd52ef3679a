import type { Kysely } from 'kysely'

// Frozen in time: never import application code here.
// A revision names one blob per configuration section; a section that did not change shares
// the previous revision's blob, so a change to one route does not copy every consumer again.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('config_revisions')
    .addColumn('revision', 'integer', (c) => c.primaryKey())
    .addColumn('ts', 'text', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('summary', 'text', (c) => c.notNull())
    .execute()

  await db.schema.createTable('config_revision_blobs')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('section', 'text', (c) => c.notNull())
    .addColumn('document', 'text', (c) => c.notNull())
    .addColumn('secrets', 'text', (c) => c.notNull())
    .execute()

  await db.schema.createTable('config_revision_sections')
    .addColumn('revision', 'integer', (c) => c.notNull())
    .addColumn('section', 'text', (c) => c.notNull())
    .addColumn('blob_id', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('config_revision_sections_pk', ['revision', 'section'])
    .execute()
  await db.schema.createIndex('config_revision_sections_blob_id').on('config_revision_sections').column('blob_id').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('config_revision_sections').execute()
  await db.schema.dropTable('config_revision_blobs').execute()
  await db.schema.dropTable('config_revisions').execute()
}
