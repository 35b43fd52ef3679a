import { randomUUID } from 'node:crypto'
import type { ConfigSection } from '../config-section.js'
import {
  type ConsumerCredentialSecrets, deleteConsumer, insertConsumer, listAllConsumers, listCredentialReferences,
  listCredentialSecrets, replaceAllCredentials, updateConsumer
} from '../../repositories/consumers.js'
import { type ConsumerDocument, ConsumerDocumentSchema, type ConsumerRateLimit } from '../../schemas/consumer.js'

function normalizeRateLimit (rateLimit: ConsumerDocument['rateLimit'] | undefined): ConsumerRateLimit | null {
  if (rateLimit === null || rateLimit === undefined) return null
  return { max: rateLimit.max, windowMs: rateLimit.windowMs ?? 60_000 }
}

/**
 * The "consumers" part of GET/PUT /admin/config. The export names each consumer's
 * credentials by reference only (key ids and prefixes, the basic username), never a key,
 * hash or password. The import matches consumers by name: those that stay keep their id
 * and every credential; those omitted are deleted with their credentials; new ones start
 * without credentials. Credential references in an imported document are ignored — they
 * cannot be recreated without the secrets.
 */
export const consumersConfigSection: ConfigSection<ConsumerDocument> = {
  name: 'consumers',
  kind: 'consumer',
  itemSchema: ConsumerDocumentSchema,
  identify: (item) => item.name,

  // Each consumer's key hashes and basic password hash, by consumer name: what a rollback puts back.
  async exportSecrets (db) {
    const [consumers, secrets] = await Promise.all([listAllConsumers(db), listCredentialSecrets(db)])
    const byId = new Map(consumers.map((consumer) => [consumer.id, { keys: [] as ConsumerCredentialSecrets['keys'], basic: null as ConsumerCredentialSecrets['basic'] }]))
    for (const key of secrets.keys) byId.get(key.consumerId)?.keys.push(key)
    for (const basic of secrets.basic) {
      const entry = byId.get(basic.consumerId)
      if (entry !== undefined) entry.basic = basic
    }
    const result: Record<string, ConsumerCredentialSecrets> = {}
    for (const consumer of consumers) {
      const entry = byId.get(consumer.id)
      if (entry !== undefined && (entry.keys.length > 0 || entry.basic !== null)) result[consumer.name] = entry
    }
    return result
  },

  // The consumers as the revision had them, then exactly its credentials: keys made since are
  // revoked, keys and passwords it had work again.
  async restore (trx, items, secrets) {
    await consumersConfigSection.replaceAll(trx, items)
    const idByName = new Map((await listAllConsumers(trx)).map((consumer) => [consumer.name, consumer.id]))
    const credentials: ConsumerCredentialSecrets[] = []
    for (const [name, entry] of Object.entries(secrets as Record<string, ConsumerCredentialSecrets>)) {
      const consumerId = idByName.get(name)
      if (consumerId === undefined) continue
      credentials.push({
        keys: entry.keys.map((key) => ({ ...key, consumerId })),
        basic: entry.basic === null ? null : { ...entry.basic, consumerId }
      })
    }
    await replaceAllCredentials(trx, credentials)
  },

  async exportItems (db) {
    const [consumers, references] = await Promise.all([listAllConsumers(db), listCredentialReferences(db)])
    const keysByConsumer = new Map<string, NonNullable<ConsumerDocument['keys']>>()
    for (const key of references.keys) {
      let keys = keysByConsumer.get(key.consumerId)
      if (keys === undefined) keysByConsumer.set(key.consumerId, keys = [])
      keys.push({ id: key.id, prefix: key.prefix, createdAt: key.createdAt })
    }
    const basicByConsumer = new Map(references.basic.map((basic) => [basic.consumerId, basic.username]))
    return consumers.map((consumer) => {
      const username = basicByConsumer.get(consumer.id)
      return {
        id: consumer.id,
        name: consumer.name,
        rateLimit: consumer.rateLimit,
        keys: keysByConsumer.get(consumer.id) ?? [],
        basic: username === undefined ? null : { username },
        createdAt: consumer.createdAt,
        updatedAt: consumer.updatedAt
      }
    })
  },

  problem (items) {
    const names = new Set<string>()
    const ids = new Set<string>()
    for (const [index, item] of items.entries()) {
      if (names.has(item.name)) return `consumers/${index}/name "${item.name}" appears more than once`
      names.add(item.name)
      if (item.id !== undefined) {
        if (ids.has(item.id)) return `consumers/${index}/id "${item.id}" appears more than once`
        ids.add(item.id)
      }
    }
    return null
  },

  async replaceAll (trx, items) {
    const existing = await listAllConsumers(trx)
    const wanted = new Set(items.map((item) => item.name))
    const staying = new Map<string, (typeof existing)[number]>()
    for (const consumer of existing) {
      if (wanted.has(consumer.name)) staying.set(consumer.name, consumer)
      else await deleteConsumer(trx, consumer.id)
    }
    const idsInUse = new Set([...staying.values()].map((consumer) => consumer.id))
    const now = new Date().toISOString()
    for (const item of items) {
      const rateLimit = normalizeRateLimit(item.rateLimit)
      const current = staying.get(item.name)
      if (current !== undefined) {
        if (JSON.stringify(current.rateLimit) !== JSON.stringify(rateLimit)) {
          await updateConsumer(trx, { ...current, rateLimit, updatedAt: now })
        }
        continue
      }
      const id = item.id !== undefined && !idsInUse.has(item.id) ? item.id : randomUUID()
      idsInUse.add(id)
      await insertConsumer(trx, { id, name: item.name, rateLimit, createdAt: item.createdAt ?? now, updatedAt: now })
    }
  }
}
