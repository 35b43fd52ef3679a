import { Type, type Static } from '@sinclair/typebox'
import { defaultsOptional } from './defaults.js'

/** Every answer the gateway makes itself (docs/routing.md "Refused before routing"). */
export const ErrorSchema = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
  requestId: Type.String()
}, { $id: 'Error', description: 'Every error the gateway or the admin API answers itself' })
export type ErrorBody = Static<typeof ErrorSchema>

/**
 * Deepest page a list serves. Without a bound, `offset=9223372036854775807` reached SQLite as a
 * float beyond int64 ("datatype mismatch", a 500); past a billion rows, narrow the query instead.
 */
export const MAX_OFFSET = 1_000_000_000

/** `limit` and `offset` of every list (docs/admin-api.md "Common rules"); both optional, defaults filled by Ajv. */
export const pageFields = {
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'items per page' }),
  offset: Type.Integer({ minimum: 0, maximum: MAX_OFFSET, default: 0, description: 'items to skip' })
}

export const ListQuerySchema = defaultsOptional(Type.Object(pageFields, { additionalProperties: false }))
export type ListQuery = Static<typeof ListQuerySchema>

export const IdParamsSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 200, description: 'the id or the name' })
})
export type IdParams = Static<typeof IdParamsSchema>

export const NamePattern = '^[a-z0-9][a-z0-9_-]*$'

export function listOf<T extends ReturnType<typeof Type.Object>> (item: T) {
  return Type.Object({ items: Type.Array(item), total: Type.Integer() })
}
