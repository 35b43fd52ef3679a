import type { Kysely } from 'kysely'

// Frozen in time: never import application code here.
// Cache purges (DELETE /admin/cache) travel to every instance as rows here, announced by the
// config_version bump; rows older than an hour are deleted by the next purge.
export async function up (db: Kysely<any>): Promise<void> {
  const postgres = db.getExecutor().adapter.constructor.name.startsWith('Postgres')
  await db.schema.createTable('cache_purges')
    .addColumn('id', postgres ? 'bigserial' : 'integer', (c) => postgres ? c.primaryKey() : c.primaryKey().autoIncrement())
    .addColumn('route_id', 'text')
    .addColumn('path_prefix', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('cache_purges').execute()
}
