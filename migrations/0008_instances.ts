import type { Kysely } from 'kysely'

// Frozen in time: never import application code here.
// One row per running gateway process, rewritten by its heartbeat every 5 s (docs/dashboard.md
// "Instances"); `series` carries its last 15 minutes of traffic buckets as JSON.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('instances')
    .addColumn('instance_id', 'text', (c) => c.primaryKey())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('pid', 'integer', (c) => c.notNull())
    .addColumn('version', 'text', (c) => c.notNull())
    .addColumn('started_at', 'text', (c) => c.notNull())
    .addColumn('last_seen_at', 'text', (c) => c.notNull())
    .addColumn('config_revision', 'bigint', (c) => c.notNull())
    .addColumn('requests_per_second', 'double precision', (c) => c.notNull())
    .addColumn('series', 'text')
    .execute()
  await db.schema.createIndex('instances_last_seen_at').on('instances').column('last_seen_at').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('instances').execute()
}
