import type { Kysely } from 'kysely'

// Frozen in time: never import application code here.
// No foreign keys: SQLite enforces them only with PRAGMA foreign_keys, so the consumers
// repository deletes a consumer's credentials itself, in the same transaction.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('consumers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('rate_limit', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute()

  await db.schema.createTable('api_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('consumer_id', 'text', (c) => c.notNull())
    .addColumn('key_hash', 'text', (c) => c.notNull().unique())
    .addColumn('prefix', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('api_keys_consumer_id').on('api_keys').column('consumer_id').execute()

  await db.schema.createTable('basic_credentials')
    .addColumn('consumer_id', 'text', (c) => c.primaryKey())
    .addColumn('username', 'text', (c) => c.notNull().unique())
    .addColumn('password_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('basic_credentials').execute()
  await db.schema.dropTable('api_keys').execute()
  await db.schema.dropTable('consumers').execute()
}
