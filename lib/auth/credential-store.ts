import type { ConsumerIdentity } from '../gateway-context.js'
import type { StoredCredentials } from '../../repositories/consumers.js'
import { parsePasswordHash, type ParsedPasswordHash } from './password.js'

export interface BasicEntry {
  consumer: ConsumerIdentity
  /** As stored, to tell whether a verification made before a reload still holds after it. */
  stored: string
  /** null when the stored hash cannot be read: such a credential never verifies. */
  hash: ParsedPasswordHash | null
}

/**
 * Every credential of every consumer, compiled from the database into maps: the request
 * path looks a key up by its hash, a username, or a consumer name in O(1) and never awaits
 * the database. A new store is built on every configuration change and swapped in whole,
 * so a revoked key or a deleted consumer stops working the moment the change is loaded.
 */
export class CredentialStore {
  private constructor (
    readonly byKeyHash: ReadonlyMap<string, ConsumerIdentity>,
    readonly byUsername: ReadonlyMap<string, BasicEntry>,
    readonly byName: ReadonlyMap<string, ConsumerIdentity>
  ) {}

  static empty (): CredentialStore {
    return new CredentialStore(new Map(), new Map(), new Map())
  }

  static build (stored: StoredCredentials): CredentialStore {
    const byId = new Map<string, ConsumerIdentity>()
    const byName = new Map<string, ConsumerIdentity>()
    for (const consumer of stored.consumers) {
      const rateLimit = consumer.rateLimit === null
        ? null
        : Object.freeze({ max: consumer.rateLimit.max, windowMs: consumer.rateLimit.windowMs ?? 60_000 })
      const identity: ConsumerIdentity = Object.freeze({ id: consumer.id, name: consumer.name, rateLimit })
      byId.set(consumer.id, identity)
      byName.set(consumer.name, identity)
    }
    // Credentials whose consumer is gone (read between two writes) are left out.
    const byKeyHash = new Map<string, ConsumerIdentity>()
    for (const key of stored.keys) {
      const consumer = byId.get(key.consumerId)
      if (consumer !== undefined) byKeyHash.set(key.keyHash, consumer)
    }
    const byUsername = new Map<string, BasicEntry>()
    for (const basic of stored.basic) {
      const consumer = byId.get(basic.consumerId)
      if (consumer !== undefined) byUsername.set(basic.username, { consumer, stored: basic.passwordHash, hash: parsePasswordHash(basic.passwordHash) })
    }
    return new CredentialStore(byKeyHash, byUsername, byName)
  }
}
