import type { Kysely } from 'kysely'

// Frozen in time: never import application code here.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('egress_rules')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('host', 'text')
    .addColumn('cidr', 'text')
    // JSON array of port numbers; "[]" matches every port.
    .addColumn('ports', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('expires_at', 'text')
    .addColumn('reason', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('egress_rules').execute()
}
