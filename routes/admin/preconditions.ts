import type { FastifyRequest } from 'fastify'
import type { Transaction } from 'kysely'
import { entityEtag, ifMatchPasses } from '../../lib/etag.js'
import { GatewayError } from '../../lib/errors.js'
import type { Database } from '../../repositories/database.js'

/**
 * The If-Match check of a PUT, PATCH or DELETE of one entity, run inside the change's
 * transaction (applyConfigChange's precondition): `current` reads the entity as GET answers
 * it. Stale → 412 with the current ETag. No If-Match: undefined, last writer wins.
 */
export function ifMatchEntity (
  request: FastifyRequest,
  what: string,
  current: (trx: Transaction<Database>) => Promise<unknown>
): ((trx: Transaction<Database>) => Promise<void>) | undefined {
  const header = request.headers['if-match']
  if (header === undefined) return undefined
  return async (trx) => {
    const body = await current(trx)
    const etag = body === undefined ? null : entityEtag(body)
    if (!ifMatchPasses(header, etag)) throw preconditionFailed(what, etag)
  }
}

export function preconditionFailed (what: string, current: string | null): GatewayError {
  return new GatewayError(412, 'GW_PRECONDITION_FAILED',
    current === null ? `${what} no longer exists (If-Match)` : `${what} changed since the ETag sent in If-Match; the current ETag is ${current}`,
    current === null ? {} : { etag: current })
}
