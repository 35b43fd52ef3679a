import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Transaction } from 'kysely'
import type { AdminChange } from '../../plugins/audit.js'
import { applyConfigChangeWithRevision, type ChangeOptions } from '../../plugins/config-history.js'
import type { Database } from '../../repositories/database.js'

export { applyConfigChangeWithRevision, isUniqueViolation } from '../../plugins/config-history.js'

/**
 * The configuration section each entity endpoint's changes stay within: its revision re-reads
 * only that section (plugins/config-history.ts). A resource not listed here (a later feature's)
 * re-reads them all, which is always right, only slower.
 */
const SECTION_OF: Readonly<Record<string, string>> = {
  route: 'routes',
  filter: 'filters',
  consumer: 'consumers',
  'api-key': 'consumers',
  'basic-credential': 'consumers',
  certificate: 'certificates',
  'egress-rule': 'egressRules'
}

/** applyConfigChangeWithRevision (plugins/config-history.ts) for an admin call that answers with what it wrote. */
export async function applyConfigChange<T> (
  app: FastifyInstance,
  request: FastifyRequest,
  change: AdminChange | ((result: T) => AdminChange),
  write: (trx: Transaction<Database>) => Promise<T>,
  options: ChangeOptions = {}
): Promise<T> {
  const resource = typeof change === 'function' ? undefined : SECTION_OF[change.resource]
  const sections = options.sections ?? (resource === undefined ? undefined : [resource])
  return (await applyConfigChangeWithRevision(app, request, change, write, { ...options, sections })).result
}
