import type { Kysely, Transaction } from 'kysely'
import type { ApiKeyRow, BasicCredentialRow, ConsumerRow, Database } from './database.js'
import type { ApiKey, BasicCredential, Consumer, ConsumerRateLimit } from '../schemas/consumer.js'

type Executor = Kysely<Database> | Transaction<Database>

export function rowToConsumer (row: ConsumerRow): Consumer {
  return {
    id: row.id,
    name: row.name,
    rateLimit: row.rate_limit === null ? null : JSON.parse(row.rate_limit) as ConsumerRateLimit,
    createdAt: row.created_at,
    updatedAt: row.updated_at
  }
}

function consumerToRow (consumer: Consumer): ConsumerRow {
  return {
    id: consumer.id,
    name: consumer.name,
    rate_limit: consumer.rateLimit === null ? null : JSON.stringify(consumer.rateLimit),
    created_at: consumer.createdAt,
    updated_at: consumer.updatedAt
  }
}

function rowToApiKey (row: ApiKeyRow): ApiKey {
  return { id: row.id, consumerId: row.consumer_id, prefix: row.prefix, createdAt: row.created_at }
}

function rowToBasic (row: Omit<BasicCredentialRow, 'password_hash'>): BasicCredential {
  return { consumerId: row.consumer_id, username: row.username, createdAt: row.created_at, updatedAt: row.updated_at }
}

// ── consumers ──────────────────────────────────────────────────────────────

export async function listConsumers (db: Executor, page: { limit: number, offset: number }): Promise<{ items: Consumer[], total: number }> {
  const rows = await db.selectFrom('consumers').selectAll().orderBy('created_at').orderBy('id').limit(page.limit).offset(page.offset).execute()
  const { total } = await db.selectFrom('consumers').select((eb) => eb.fn.countAll<number>().as('total')).executeTakeFirstOrThrow()
  return { items: rows.map(rowToConsumer), total: Number(total) }
}

export async function listAllConsumers (db: Executor): Promise<Consumer[]> {
  const rows = await db.selectFrom('consumers').selectAll().orderBy('created_at').orderBy('id').execute()
  return rows.map(rowToConsumer)
}

/** By id or, failing that, by name (docs/admin-api.md "Common rules": `:id` accepts either). */
export async function findConsumer (db: Executor, idOrName: string): Promise<Consumer | undefined> {
  const row = await db.selectFrom('consumers').selectAll()
    .where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]))
    .orderBy((eb) => eb.case().when('id', '=', idOrName).then(0).else(1).end())
    .executeTakeFirst()
  return row === undefined ? undefined : rowToConsumer(row)
}

export async function consumerNameTaken (db: Executor, name: string, exceptId?: string): Promise<boolean> {
  let query = db.selectFrom('consumers').select('id').where('name', '=', name)
  if (exceptId !== undefined) query = query.where('id', '!=', exceptId)
  return (await query.executeTakeFirst()) !== undefined
}

export async function insertConsumer (db: Executor, consumer: Consumer): Promise<void> {
  await db.insertInto('consumers').values(consumerToRow(consumer)).execute()
}

export async function updateConsumer (db: Executor, consumer: Consumer): Promise<void> {
  const { id, ...row } = consumerToRow(consumer)
  await db.updateTable('consumers').set(row).where('id', '=', id).execute()
}

/** Deletes the consumer with every credential it has; run inside a transaction. */
export async function deleteConsumer (db: Executor, id: string): Promise<boolean> {
  await db.deleteFrom('api_keys').where('consumer_id', '=', id).execute()
  await db.deleteFrom('basic_credentials').where('consumer_id', '=', id).execute()
  const result = await db.deleteFrom('consumers').where('id', '=', id).executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

// ── API keys ───────────────────────────────────────────────────────────────

export async function insertApiKey (db: Executor, key: ApiKey & { keyHash: string }): Promise<void> {
  await db.insertInto('api_keys').values({
    id: key.id, consumer_id: key.consumerId, key_hash: key.keyHash, prefix: key.prefix, created_at: key.createdAt
  }).execute()
}

export async function listApiKeys (db: Executor, consumerId: string): Promise<ApiKey[]> {
  const rows = await db.selectFrom('api_keys').selectAll().where('consumer_id', '=', consumerId).orderBy('created_at').orderBy('id').execute()
  return rows.map(rowToApiKey)
}

export async function findApiKey (db: Executor, consumerId: string, keyId: string): Promise<ApiKey | undefined> {
  const row = await db.selectFrom('api_keys').selectAll().where('consumer_id', '=', consumerId).where('id', '=', keyId).executeTakeFirst()
  return row === undefined ? undefined : rowToApiKey(row)
}

export async function deleteApiKey (db: Executor, consumerId: string, keyId: string): Promise<boolean> {
  const result = await db.deleteFrom('api_keys').where('consumer_id', '=', consumerId).where('id', '=', keyId).executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

// ── basic credentials ──────────────────────────────────────────────────────

export async function findBasicCredential (db: Executor, consumerId: string): Promise<BasicCredential | undefined> {
  const row = await db.selectFrom('basic_credentials').select(['consumer_id', 'username', 'created_at', 'updated_at'])
    .where('consumer_id', '=', consumerId).executeTakeFirst()
  return row === undefined ? undefined : rowToBasic(row)
}

export async function basicUsernameTaken (db: Executor, username: string, exceptConsumerId: string): Promise<boolean> {
  const row = await db.selectFrom('basic_credentials').select('consumer_id')
    .where('username', '=', username).where('consumer_id', '!=', exceptConsumerId).executeTakeFirst()
  return row !== undefined
}

/** One basic credential per consumer: a second PUT replaces the first. */
export async function upsertBasicCredential (db: Executor, credential: BasicCredential & { passwordHash: string }): Promise<void> {
  const updated = await db.updateTable('basic_credentials')
    .set({ username: credential.username, password_hash: credential.passwordHash, updated_at: credential.updatedAt })
    .where('consumer_id', '=', credential.consumerId).executeTakeFirst()
  if (Number(updated.numUpdatedRows) > 0) return
  await db.insertInto('basic_credentials').values({
    consumer_id: credential.consumerId,
    username: credential.username,
    password_hash: credential.passwordHash,
    created_at: credential.createdAt,
    updated_at: credential.updatedAt
  }).execute()
}

export async function deleteBasicCredential (db: Executor, consumerId: string): Promise<boolean> {
  const result = await db.deleteFrom('basic_credentials').where('consumer_id', '=', consumerId).executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

// ── what the auth stage and the config document need ───────────────────────

export interface StoredCredentials {
  consumers: Consumer[]
  keys: Array<{ consumerId: string, keyHash: string }>
  basic: Array<{ consumerId: string, username: string, passwordHash: string }>
}

/** Everything the in-memory credential store is compiled from, in one read. */
export async function loadCredentials (db: Executor): Promise<StoredCredentials> {
  const [consumers, keys, basic] = await Promise.all([
    db.selectFrom('consumers').selectAll().execute(),
    db.selectFrom('api_keys').select(['consumer_id', 'key_hash']).execute(),
    db.selectFrom('basic_credentials').select(['consumer_id', 'username', 'password_hash']).execute()
  ])
  return {
    consumers: consumers.map(rowToConsumer),
    keys: keys.map((row) => ({ consumerId: row.consumer_id, keyHash: row.key_hash })),
    basic: basic.map((row) => ({ consumerId: row.consumer_id, username: row.username, passwordHash: row.password_hash }))
  }
}

/** Credential references (never secrets) of every consumer, for the /admin/config export. */
export async function listCredentialReferences (db: Executor): Promise<{ keys: ApiKey[], basic: BasicCredential[] }> {
  const [keys, basic] = await Promise.all([
    db.selectFrom('api_keys').selectAll().orderBy('created_at').orderBy('id').execute(),
    db.selectFrom('basic_credentials').select(['consumer_id', 'username', 'created_at', 'updated_at']).execute()
  ])
  return { keys: keys.map(rowToApiKey), basic: basic.map(rowToBasic) }
}

/** One consumer's credentials with their hashes: what a configuration revision keeps for a rollback. */
export interface ConsumerCredentialSecrets {
  keys: Array<{ id: string, consumerId: string, prefix: string, keyHash: string, createdAt: string }>
  basic: { consumerId: string, username: string, passwordHash: string, createdAt: string, updatedAt: string } | null
}

export async function listCredentialSecrets (db: Executor): Promise<{ keys: ConsumerCredentialSecrets['keys'], basic: Array<NonNullable<ConsumerCredentialSecrets['basic']>> }> {
  const [keys, basic] = await Promise.all([
    db.selectFrom('api_keys').selectAll().orderBy('created_at').orderBy('id').execute(),
    db.selectFrom('basic_credentials').selectAll().execute()
  ])
  return {
    keys: keys.map((row) => ({ id: row.id, consumerId: row.consumer_id, prefix: row.prefix, keyHash: row.key_hash, createdAt: row.created_at })),
    basic: basic.map((row) => ({ consumerId: row.consumer_id, username: row.username, passwordHash: row.password_hash, createdAt: row.created_at, updatedAt: row.updated_at }))
  }
}

/** Every credential replaced by these (a rollback); run inside a transaction. */
export async function replaceAllCredentials (db: Executor, credentials: ConsumerCredentialSecrets[]): Promise<void> {
  await db.deleteFrom('api_keys').execute()
  await db.deleteFrom('basic_credentials').execute()
  const keys = credentials.flatMap((entry) => entry.keys)
  // Chunks keep each statement under SQLite's and PostgreSQL's bound-parameter limits.
  for (let i = 0; i < keys.length; i += 500) {
    await db.insertInto('api_keys').values(keys.slice(i, i + 500).map((key) => ({
      id: key.id, consumer_id: key.consumerId, key_hash: key.keyHash, prefix: key.prefix, created_at: key.createdAt
    }))).execute()
  }
  const basic = credentials.flatMap((entry) => entry.basic === null ? [] : [entry.basic])
  for (let i = 0; i < basic.length; i += 500) {
    await db.insertInto('basic_credentials').values(basic.slice(i, i + 500).map((entry) => ({
      consumer_id: entry.consumerId, username: entry.username, password_hash: entry.passwordHash, created_at: entry.createdAt, updated_at: entry.updatedAt
    }))).execute()
  }
}
