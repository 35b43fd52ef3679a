import type { Kysely, Transaction } from 'kysely'
import type { Database, EgressRuleRow } from './database.js'
import type { EgressRule } from '../schemas/egress-rule.js'

type Executor = Kysely<Database> | Transaction<Database>

function rowToRule (row: EgressRuleRow): EgressRule {
  return {
    id: row.id,
    action: row.action as EgressRule['action'],
    host: row.host,
    cidr: row.cidr,
    ports: JSON.parse(row.ports) as number[],
    expiresAt: row.expires_at,
    reason: row.reason,
    createdAt: row.created_at
  }
}

function ruleToRow (rule: EgressRule): EgressRuleRow {
  return {
    id: rule.id,
    action: rule.action,
    host: rule.host,
    cidr: rule.cidr,
    ports: JSON.stringify(rule.ports),
    expires_at: rule.expiresAt,
    reason: rule.reason,
    created_at: rule.createdAt
  }
}

export async function listEgressRules (db: Executor, page: { limit: number, offset: number }): Promise<{ items: EgressRule[], total: number }> {
  const rows = await db.selectFrom('egress_rules').selectAll().orderBy('created_at').orderBy('id').limit(page.limit).offset(page.offset).execute()
  const { total } = await db.selectFrom('egress_rules').select((eb) => eb.fn.countAll<number>().as('total')).executeTakeFirstOrThrow()
  return { items: rows.map(rowToRule), total: Number(total) }
}

export async function listAllEgressRules (db: Executor): Promise<EgressRule[]> {
  const rows = await db.selectFrom('egress_rules').selectAll().orderBy('created_at').orderBy('id').execute()
  return rows.map(rowToRule)
}

export async function findEgressRule (db: Executor, id: string): Promise<EgressRule | undefined> {
  const row = await db.selectFrom('egress_rules').selectAll().where('id', '=', id).executeTakeFirst()
  return row === undefined ? undefined : rowToRule(row)
}

export async function insertEgressRules (db: Executor, rules: EgressRule[]): Promise<void> {
  // SQLite caps bound parameters per statement; 8 columns × 100 rows stays far below it.
  for (let i = 0; i < rules.length; i += 100) {
    await db.insertInto('egress_rules').values(rules.slice(i, i + 100).map(ruleToRow)).execute()
  }
}

export async function deleteEgressRule (db: Executor, id: string): Promise<boolean> {
  const result = await db.deleteFrom('egress_rules').where('id', '=', id).executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

export async function deleteAllEgressRules (db: Executor): Promise<void> {
  await db.deleteFrom('egress_rules').execute()
}
