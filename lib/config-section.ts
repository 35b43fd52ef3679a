import type { TSchema } from '@sinclair/typebox'
import type { Kysely, Transaction } from 'kysely'
import type { Database } from '../repositories/database.js'

/**
 * One part of the `/admin/config` document (docs/admin-api.md "Whole configuration"): routes, filters,
 * consumers. GET exports every section; PUT validates every section first and then
 * replaces them all in one transaction, all-or-nothing.
 */
export interface ConfigSection<Item = unknown> {
  /** Key in the document: "routes", "filters", "consumers". */
  name: string
  /** TypeBox schema of one item as it appears in the document (no secrets). */
  itemSchema: TSchema
  exportItems: (db: Kysely<Database>) => Promise<Item[]>
  /** Checks beyond the schema, e.g. unique names; a message naming the field ("consumers/2/name …") or null. */
  problem: (items: Item[]) => string | null
  /** Make the stored state equal `items`, inside the import transaction. */
  replaceAll: (trx: Transaction<Database>, items: Item[]) => Promise<void>
}
