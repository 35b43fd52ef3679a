import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { Database } from '../repositories/database.js'
import { getSetting, putSettingIfAbsent } from '../repositories/settings.js'

const SETTING = 'admin_token_sha256'

export function sha256 (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/**
 * The SHA-256 of the admin token. ADMIN_TOKEN wins; otherwise a random token is made at
 * first start, only its hash is stored, and the token itself is logged exactly once.
 */
export async function resolveAdminTokenHash (db: Kysely<Database>, configured: string | null, log: FastifyBaseLogger): Promise<Buffer> {
  if (configured !== null) return sha256(configured)
  const stored = await getSetting(db, SETTING)
  if (stored !== undefined) return Buffer.from(stored, 'hex')
  const token = 'gha_' + randomBytes(32).toString('base64url')
  const won = await putSettingIfAbsent(db, SETTING, sha256(token).toString('hex'))
  if (!won) return Buffer.from((await getSetting(db, SETTING)) as string, 'hex')
  log.warn(`generated admin token (shown only now): ${token}  — set ADMIN_TOKEN to use your own`)
  return sha256(token)
}

/** Constant-time: both sides are hashed first, so lengths never differ. */
export function tokenMatches (presented: string, expectedHash: Buffer): boolean {
  return timingSafeEqual(sha256(presented), expectedHash)
}
