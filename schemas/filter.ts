import { Type, type Static } from '@sinclair/typebox'
import { defaultsOptional } from './defaults.js'

/** Fields a client sends to POST /admin/filters (docs/policies.md "Filters"). */
export const FilterInputSchema = defaultsOptional(Type.Object({
  action: Type.Union([Type.Literal('deny'), Type.Literal('allow')], { description: 'deny → 403; allow → only matching IPs reach the path prefix' }),
  ip: Type.Union([Type.String({ minLength: 2, maxLength: 64 }), Type.Null()], { default: null, description: 'an IPv4/IPv6 address or CIDR block' }),
  path: Type.Union([Type.String({ pattern: '^/[^?#\\s\\\\]*$', maxLength: 2048 }), Type.Null()], { default: null, description: 'a path prefix, matched on segment boundaries' }),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { default: null }),
  reason: Type.String({ maxLength: 500, default: '' })
}, { additionalProperties: false, $id: 'FilterInput' }))
export type FilterInput = Static<typeof FilterInputSchema>

export const FilterSchema = Type.Object({
  id: Type.String(),
  action: Type.Union([Type.Literal('deny'), Type.Literal('allow')]),
  ip: Type.Union([Type.String(), Type.Null()]),
  path: Type.Union([Type.String(), Type.Null()]),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  reason: Type.String(),
  createdAt: Type.String({ format: 'date-time' })
}, { $id: 'Filter' })
export type Filter = Static<typeof FilterSchema>

/** One filter in the /admin/config document: as exported, id and createdAt optional on import. */
export const FilterConfigItemSchema = defaultsOptional(Type.Object({
  ...FilterInputSchema.properties,
  id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  createdAt: Type.Optional(Type.String({ format: 'date-time' }))
}, { additionalProperties: false }))
export type FilterConfigItem = Static<typeof FilterConfigItemSchema>
