import { createHash, randomBytes } from 'node:crypto'

/** Recognisable in logs, configs and secret scanners. */
export const API_KEY_PREFIX = 'gh_'
const KEY_BYTES = 32
/** How much of a key is kept in the clear to tell keys apart: "gh_" + 6 characters (36 of 256 bits). */
const SHOWN_PREFIX_LENGTH = API_KEY_PREFIX.length + 6

/** "gh_" + 43 base64url characters (32 random bytes). Anything else is refused before hashing. */
const API_KEY_SHAPE = /^gh_[A-Za-z0-9_-]{43}$/

export interface GeneratedApiKey {
  key: string
  prefix: string
  hash: string
}

export function generateApiKey (): GeneratedApiKey {
  const key = API_KEY_PREFIX + randomBytes(KEY_BYTES).toString('base64url')
  return { key, prefix: key.slice(0, SHOWN_PREFIX_LENGTH), hash: hashApiKey(key) }
}

/**
 * SHA-256, unsalted, on purpose: a key carries 256 random bits, so even a fast hash cannot be
 * reversed by guessing, and a slow or salted hash would only cost CPU on every request and
 * rule out the O(1) lookup by hash that the auth stage does. (Passwords, chosen by people,
 * get scrypt instead: lib/auth/password.ts.) The map lookup by hash also means no
 * comparison of the secret itself can leak timing.
 */
export function hashApiKey (key: string): string {
  return createHash('sha256').update(key).digest('hex')
}

export function looksLikeApiKey (value: string): boolean {
  return value.length === API_KEY_PREFIX.length + 43 && API_KEY_SHAPE.test(value)
}
