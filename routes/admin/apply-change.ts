import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Transaction } from 'kysely'
import type { AdminChange } from '../../plugins/audit.js'
import { applyConfigChangeWithRevision, type ChangeOptions } from '../../plugins/config-history.js'
import type { Database } from '../../repositories/database.js'

export { applyConfigChangeWithRevision, isUniqueViolation } from '../../plugins/config-history.js'

/** applyConfigChangeWithRevision (plugins/config-history.ts) for an admin call that answers with what it wrote. */
export async function applyConfigChange<T> (
  app: FastifyInstance,
  request: FastifyRequest,
  change: AdminChange | ((result: T) => AdminChange),
  write: (trx: Transaction<Database>) => Promise<T>,
  options: ChangeOptions = {}
): Promise<T> {
  return (await applyConfigChangeWithRevision(app, request, change, write, options)).result
}
