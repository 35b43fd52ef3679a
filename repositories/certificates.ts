import type { Kysely, Transaction } from 'kysely'
import type { CertificateRow, Database } from './database.js'

type Executor = Kysely<Database> | Transaction<Database>

/** A certificate as stored: the key still sealed (or in clear without SECRET_KEY). */
export interface StoredCertificate {
  id: string
  name: string
  cert: string
  storedKey: string
  snis: string[]
  createdAt: string
  updatedAt: string
}

function fromRow (row: CertificateRow, snis: string[]): StoredCertificate {
  return { id: row.id, name: row.name, cert: row.cert, storedKey: row.key, snis, createdAt: row.created_at, updatedAt: row.updated_at }
}

async function snisByCertificate (db: Executor, ids: string[]): Promise<Map<string, string[]>> {
  const byCertificate = new Map<string, string[]>(ids.map((id) => [id, []]))
  if (ids.length === 0) return byCertificate
  const rows = await db.selectFrom('certificate_snis').selectAll().where('certificate_id', 'in', ids).orderBy('sni').execute()
  for (const row of rows) byCertificate.get(row.certificate_id)?.push(row.sni)
  return byCertificate
}

export async function listCertificates (db: Executor, page: { limit: number, offset: number }): Promise<{ items: StoredCertificate[], total: number }> {
  const rows = await db.selectFrom('certificates').selectAll().orderBy('created_at').orderBy('id').limit(page.limit).offset(page.offset).execute()
  const { total } = await db.selectFrom('certificates').select((eb) => eb.fn.countAll<number>().as('total')).executeTakeFirstOrThrow()
  const snis = await snisByCertificate(db, rows.map((row) => row.id))
  return { items: rows.map((row) => fromRow(row, snis.get(row.id) ?? [])), total: Number(total) }
}

export async function listAllCertificates (db: Executor): Promise<StoredCertificate[]> {
  const rows = await db.selectFrom('certificates').selectAll().orderBy('created_at').orderBy('id').execute()
  const snis = await snisByCertificate(db, rows.map((row) => row.id))
  return rows.map((row) => fromRow(row, snis.get(row.id) ?? []))
}

/** By id or, failing that, by name. */
export async function findCertificate (db: Executor, idOrName: string): Promise<StoredCertificate | undefined> {
  const row = await db.selectFrom('certificates').selectAll()
    .where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]))
    .orderBy((eb) => eb.case().when('id', '=', idOrName).then(0).else(1).end())
    .executeTakeFirst()
  if (row === undefined) return undefined
  const snis = await snisByCertificate(db, [row.id])
  return fromRow(row, snis.get(row.id) ?? [])
}

export async function certificateNameTaken (db: Executor, name: string, exceptId?: string): Promise<boolean> {
  let query = db.selectFrom('certificates').select('id').where('name', '=', name)
  if (exceptId !== undefined) query = query.where('id', '!=', exceptId)
  return (await query.executeTakeFirst()) !== undefined
}

/** The SNIs of `snis` held by another certificate than `exceptId`, with that certificate's name. */
export async function takenSnis (db: Executor, snis: string[], exceptId?: string): Promise<Array<{ sni: string, name: string }>> {
  if (snis.length === 0) return []
  let query = db.selectFrom('certificate_snis')
    .innerJoin('certificates', 'certificates.id', 'certificate_snis.certificate_id')
    .select(['certificate_snis.sni as sni', 'certificates.name as name'])
    .where('certificate_snis.sni', 'in', snis)
  if (exceptId !== undefined) query = query.where('certificate_snis.certificate_id', '!=', exceptId)
  return query.execute()
}

export async function insertCertificate (db: Executor, certificate: StoredCertificate): Promise<void> {
  await db.insertInto('certificates').values({
    id: certificate.id,
    name: certificate.name,
    cert: certificate.cert,
    key: certificate.storedKey,
    created_at: certificate.createdAt,
    updated_at: certificate.updatedAt
  }).execute()
  await insertSnis(db, certificate)
}

export async function updateCertificate (db: Executor, certificate: StoredCertificate): Promise<void> {
  await db.updateTable('certificates').set({
    name: certificate.name,
    cert: certificate.cert,
    key: certificate.storedKey,
    updated_at: certificate.updatedAt
  }).where('id', '=', certificate.id).execute()
  await db.deleteFrom('certificate_snis').where('certificate_id', '=', certificate.id).execute()
  await insertSnis(db, certificate)
}

async function insertSnis (db: Executor, certificate: StoredCertificate): Promise<void> {
  if (certificate.snis.length === 0) return
  await db.insertInto('certificate_snis').values(certificate.snis.map((sni) => ({ sni, certificate_id: certificate.id }))).execute()
}

export async function deleteCertificate (db: Executor, id: string): Promise<boolean> {
  await db.deleteFrom('certificate_snis').where('certificate_id', '=', id).execute()
  const result = await db.deleteFrom('certificates').where('id', '=', id).executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

export async function deleteAllCertificates (db: Executor): Promise<void> {
  await db.deleteFrom('certificate_snis').execute()
  await db.deleteFrom('certificates').execute()
}
