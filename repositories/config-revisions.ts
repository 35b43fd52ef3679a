import type { Kysely, Transaction } from 'kysely'
import type { Database } from './database.js'

type Executor = Kysely<Database> | Transaction<Database>

export type RevisionSource = 'admin-api' | 'config-import' | 'rollback' | 'config-file'

export interface RevisionSummary { created: number, updated: number, deleted: number }

export interface RevisionRecord {
  revision: number
  ts: string
  actor: string
  source: RevisionSource
  summary: RevisionSummary
}

export interface RevisionBlob { id: string, section: string, document: string, secrets: string }

function toRecord (row: { revision: number, ts: string, actor: string, source: string, summary: string }): RevisionRecord {
  return { revision: Number(row.revision), ts: row.ts, actor: row.actor, source: row.source as RevisionSource, summary: JSON.parse(row.summary) as RevisionSummary }
}

export async function latestRevisionNumber (db: Executor): Promise<number> {
  const row = await db.selectFrom('config_revisions').select((eb) => eb.fn.max('revision').as('latest')).executeTakeFirst()
  return row?.latest === null || row?.latest === undefined ? 0 : Number(row.latest)
}

export async function findRevision (db: Executor, revision: number): Promise<RevisionRecord | undefined> {
  const row = await db.selectFrom('config_revisions').selectAll().where('revision', '=', revision).executeTakeFirst()
  return row === undefined ? undefined : toRecord(row)
}

/** Newest first. */
export async function listRevisions (db: Executor, page: { limit: number, offset: number }): Promise<{ items: RevisionRecord[], total: number }> {
  const rows = await db.selectFrom('config_revisions').selectAll().orderBy('revision', 'desc').limit(page.limit).offset(page.offset).execute()
  const { total } = await db.selectFrom('config_revisions').select((eb) => eb.fn.countAll<number>().as('total')).executeTakeFirstOrThrow()
  return { items: rows.map(toRecord), total: Number(total) }
}

/** Section name → blob id of one revision. */
export async function revisionBlobIds (db: Executor, revision: number): Promise<Map<string, string>> {
  const rows = await db.selectFrom('config_revision_sections').select(['section', 'blob_id']).where('revision', '=', revision).execute()
  return new Map(rows.map((row) => [row.section, row.blob_id]))
}

export async function findBlobs (db: Executor, ids: string[]): Promise<RevisionBlob[]> {
  if (ids.length === 0) return []
  return await db.selectFrom('config_revision_blobs').selectAll().where('id', 'in', ids).execute()
}

export async function existingBlobIds (db: Executor, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set()
  const rows = await db.selectFrom('config_revision_blobs').select('id').where('id', 'in', ids).execute()
  return new Set(rows.map((row) => row.id))
}

export async function insertRevision (trx: Executor, record: RevisionRecord, blobIds: Map<string, string>, newBlobs: RevisionBlob[]): Promise<void> {
  for (const blob of newBlobs) await trx.insertInto('config_revision_blobs').values(blob).execute()
  await trx.insertInto('config_revisions').values({
    revision: record.revision, ts: record.ts, actor: record.actor, source: record.source, summary: JSON.stringify(record.summary)
  }).execute()
  await trx.insertInto('config_revision_sections')
    .values([...blobIds].map(([section, id]) => ({ revision: record.revision, section, blob_id: id }))).execute()
}

/** Keeps the newest `keep` revisions; blobs no kept revision names go with the others. */
export async function pruneRevisions (trx: Executor, newest: number, keep: number): Promise<number> {
  const below = newest - keep
  if (below < 1) return 0
  const deleted = await trx.deleteFrom('config_revisions').where('revision', '<=', below).executeTakeFirst()
  if (Number(deleted.numDeletedRows) === 0) return 0
  await trx.deleteFrom('config_revision_sections').where('revision', '<=', below).execute()
  await trx.deleteFrom('config_revision_blobs')
    .where(({ not, exists, selectFrom }) => not(exists(
      selectFrom('config_revision_sections').select('revision').whereRef('config_revision_sections.blob_id', '=', 'config_revision_blobs.id')
    ))).execute()
  return Number(deleted.numDeletedRows)
}

/** Bytes a revision's new content took (what "storage per change" measures). */
export function blobBytes (blobs: RevisionBlob[]): number {
  return blobs.reduce((sum, blob) => sum + blob.id.length + blob.section.length + blob.document.length + blob.secrets.length, 0)
}
