import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Transaction } from 'kysely'
import type { AdminChange } from '../../plugins/audit.js'
import type { Database } from '../../repositories/database.js'
import { GatewayError } from '../../lib/errors.js'

/**
 * The one way the admin API changes configuration: the write and the config_version bump
 * commit together, the running gateway reloads before the response is sent, the change is
 * audited, and other instances see the new version on their next poll (docs/architecture.md "One admin change").
 */
export async function applyConfigChange<T> (
  app: FastifyInstance,
  request: FastifyRequest,
  change: AdminChange | ((result: T) => AdminChange),
  write: (trx: Transaction<Database>) => Promise<T>
): Promise<T> {
  let result: T
  try {
    result = await app.db.transaction().execute(async (trx) => {
      const written = await write(trx)
      await app.configChanges.bump(trx)
      return written
    })
  } catch (err) {
    if (isUniqueViolation(err)) throw new GatewayError(409, 'GW_CONFLICT', 'name already taken')
    throw err
  }
  await app.configChanges.refresh()
  app.audit.recordAdmin(request, typeof change === 'function' ? change(result) : change)
  return result
}

export function isUniqueViolation (err: unknown): boolean {
  const { code, message } = err as { code?: string, message?: string }
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || (message ?? '').includes('UNIQUE constraint failed')
}
