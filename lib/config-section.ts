import type { TSchema } from '@sinclair/typebox'
import type { Kysely, Transaction } from 'kysely'
import type { Database } from '../repositories/database.js'

/** What a section keeps beyond its document, by item identity (see ConfigSection.exportSecrets). */
export type SectionSecrets = Record<string, unknown>

/**
 * One part of the `/admin/config` document (docs/admin-api.md "Whole configuration"): routes, filters,
 * consumers. GET exports every section; PUT validates every section first and then
 * replaces them all in one transaction, all-or-nothing. Revisions keep every section's items and
 * secrets, so a section registered here is in the history and rollback by itself
 * (docs/config-history.md).
 */
export interface ConfigSection<Item = unknown> {
  /** Key in the document: "routes", "filters", "consumers". */
  name: string
  /** One item in diffs and messages: "route", "filter", "consumer". */
  kind: string
  /** TypeBox schema of one item as it appears in the document (no secrets). */
  itemSchema: TSchema
  /** What pairs an item of one document with the same item of another in a diff: its name, or for a filter its rule. */
  identify: (item: Item) => string
  exportItems: (db: Kysely<Database>) => Promise<Item[]>
  /** Checks beyond the schema, e.g. unique names; a message naming the field ("consumers/2/name …") or null. */
  problem: (items: Item[]) => string | null
  /** Make the stored state equal `items`, inside the import transaction. */
  replaceAll: (trx: Transaction<Database>, items: Item[]) => Promise<void>
  /**
   * What a rollback needs that the document leaves out (credential hashes, JWT secrets, private
   * keys), by identify(item). Kept in revisions (sealed with SECRET_KEY when set), never shown.
   * Sections without secrets leave it out.
   */
  exportSecrets?: (db: Kysely<Database>) => Promise<SectionSecrets>
  /** Rollback: make the stored state equal a revision's items with their secrets back. Default: replaceAll(items). */
  restore?: (trx: Transaction<Database>, items: Item[], secrets: SectionSecrets) => Promise<void>
}
