import { Type, type Static } from '@sinclair/typebox'

/** Every answer the gateway makes itself (contract section 3). */
export const ErrorSchema = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
  requestId: Type.String()
}, { $id: 'Error', description: 'Every error the gateway or the admin API answers itself' })
export type ErrorBody = Static<typeof ErrorSchema>

export const ListQuerySchema = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  offset: Type.Integer({ minimum: 0, default: 0 })
}, { additionalProperties: false })
export type ListQuery = Static<typeof ListQuerySchema>

export const IdParamsSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 200, description: 'the id or the name' })
})
export type IdParams = Static<typeof IdParamsSchema>

export const NamePattern = '^[a-z0-9][a-z0-9_-]*$'

export function listOf<T extends ReturnType<typeof Type.Object>> (item: T) {
  return Type.Object({ items: Type.Array(item), total: Type.Integer() })
}
