import type { Kysely } from 'kysely'

// Frozen in time: never import application code here.
export async function up (db: Kysely<any>): Promise<void> {
  const postgres = db.getExecutor().adapter.constructor.name.startsWith('Postgres')
  await db.schema.createTable('audit_log')
    .addColumn('id', postgres ? 'bigserial' : 'integer', (c) => postgres ? c.primaryKey() : c.primaryKey().autoIncrement())
    .addColumn('ts', 'text', (c) => c.notNull())
    .addColumn('event_type', 'text', (c) => c.notNull())
    .addColumn('request_id', 'text')
    .addColumn('client_ip', 'text')
    .addColumn('method', 'text')
    .addColumn('path', 'text')
    .addColumn('route_id', 'text')
    .addColumn('consumer_id', 'text')
    .addColumn('status', 'integer')
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('duration_ms', 'real')
    .addColumn('bytes_in', 'bigint')
    .addColumn('bytes_out', 'bigint')
    .addColumn('user_agent', 'text')
    .addColumn('detail', 'text')
    .execute()
  await db.schema.createIndex('audit_log_ts').on('audit_log').column('ts').execute()
  await db.schema.createIndex('audit_log_client_ip_ts').on('audit_log').columns(['client_ip', 'ts']).execute()
  await db.schema.createIndex('audit_log_route_id_ts').on('audit_log').columns(['route_id', 'ts']).execute()
  // Admin events are rare among request rows, rejections rare among successes: both are
  // filtered for often. status has no index of its own (outcome narrows it first).
  await db.schema.createIndex('audit_log_event_type_ts').on('audit_log').columns(['event_type', 'ts']).execute()
  await db.schema.createIndex('audit_log_outcome_ts').on('audit_log').columns(['outcome', 'ts']).execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('audit_log').execute()
}
