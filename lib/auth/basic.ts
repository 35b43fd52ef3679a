import { createHmac, randomBytes } from 'node:crypto'
import type { ConsumerIdentity } from '../gateway-context.js'
import type { CredentialStore } from './credential-store.js'
import { ConcurrencyLimiter, verifyPassword, type ParsedPasswordHash } from './password.js'

export interface BasicCredentials {
  username: string
  password: string
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/

/** `Basic base64(user:pass)` → its parts, or null when it is not well-formed (RFC 7617). */
export function parseBasicAuthorization (header: string): BasicCredentials | null {
  if (header.length < 7 || header.slice(0, 6).toLowerCase() !== 'basic ') return null
  const encoded = header.slice(6).trim()
  if (encoded.length === 0 || encoded.length > 4096 || encoded.length % 4 !== 0 || !BASE64.test(encoded)) return null
  const decoded = Buffer.from(encoded, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon <= 0) return null
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

export type VerifyResult = ConsumerIdentity | null | Promise<ConsumerIdentity | null>

export interface BasicVerifierOptions {
  /** How long a successful verification is remembered. */
  cacheTtlMs: number
  cacheMaxEntries: number
  /** scrypt runs at once, and how many may wait before requests are refused (BusyError). */
  concurrency: number
  maxQueued: number
}

interface CacheEntry {
  entry: { stored: string, consumer: ConsumerIdentity }
  expiresAt: number
}

/**
 * Verifies basic credentials against the store without letting a client burn the CPU:
 * a verified username/password pair is remembered for `cacheTtlMs` under an HMAC of the
 * pair (key random per process, so the cache holds no password and no reusable digest),
 * so a legitimate client pays scrypt once per TTL and answers from the cache are
 * synchronous; cache misses go through a small concurrency cap. Unknown usernames cost
 * one scrypt run too, so timing does not tell which usernames exist.
 */
export class BasicVerifier {
  private readonly cacheKey = randomBytes(32)
  private readonly cache = new Map<string, CacheEntry>()
  private readonly limiter: ConcurrencyLimiter
  private readonly decoy: ParsedPasswordHash = {
    N: 2 ** 15, r: 8, p: 1, salt: randomBytes(16), hash: randomBytes(32)
  }

  constructor (private readonly options: BasicVerifierOptions, private readonly store: () => CredentialStore) {
    this.limiter = new ConcurrencyLimiter(options.concurrency, options.maxQueued)
  }

  /** Forget every verification: called whenever the credential store is rebuilt. */
  reset (): void {
    this.cache.clear()
  }

  get cacheSize (): number {
    return this.cache.size
  }

  /** The consumer, null for wrong credentials; a promise when scrypt has to run. Rejects with BusyError. */
  verify ({ username, password }: BasicCredentials): VerifyResult {
    const cacheKey = createHmac('sha256', this.cacheKey).update(username).update('\0').update(password).digest('base64url')
    const now = Date.now()
    const cached = this.cache.get(cacheKey)
    const entry = this.store().byUsername.get(username)
    if (cached !== undefined) {
      if (cached.expiresAt > now && entry !== undefined && entry.stored === cached.entry.stored) return entry.consumer
      this.cache.delete(cacheKey)
    }
    return this.limiter.run(async () => {
      if (entry === undefined || entry.hash === null) {
        await verifyPassword(password, this.decoy)
        return null
      }
      if (!await verifyPassword(password, entry.hash)) return null
      // The credential may have changed while scrypt ran: admit and cache only if it did not.
      const current = this.store().byUsername.get(username)
      if (current === undefined || current.stored !== entry.stored) return null
      this.remember(cacheKey, { stored: current.stored, consumer: current.consumer })
      return current.consumer
    })
  }

  private remember (cacheKey: string, entry: CacheEntry['entry']): void {
    if (this.cache.size >= this.options.cacheMaxEntries) {
      // Oldest first (Map keeps insertion order).
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    this.cache.set(cacheKey, { entry, expiresAt: Date.now() + this.options.cacheTtlMs })
  }
}
