import { Type, type Static } from '@sinclair/typebox'
import { NamePattern } from './common.js'
import { defaultsOptional } from './defaults.js'

/** A consumer's own limit; it replaces the route's when the route limits `by: "consumer"`. */
export const ConsumerRateLimitSchema = defaultsOptional(Type.Object({
  max: Type.Integer({ minimum: 1 }),
  windowMs: Type.Integer({ minimum: 100, maximum: 86_400_000 * 7, default: 60_000 })
}, { additionalProperties: false }))
export type ConsumerRateLimit = Static<typeof ConsumerRateLimitSchema>

const consumerFields = {
  name: Type.String({ pattern: NamePattern, maxLength: 100 }),
  rateLimit: Type.Union([ConsumerRateLimitSchema, Type.Null()], { default: null })
}

/** POST and PUT body. */
export const ConsumerInputSchema = defaultsOptional(Type.Object(consumerFields, { additionalProperties: false, $id: 'ConsumerInput' }))
export type ConsumerInput = Static<typeof ConsumerInputSchema>

/** PATCH body: any subset; no defaults, or a missing field would be "filled" and overwrite the stored one. */
export const ConsumerPatchSchema = Type.Object({
  name: Type.Optional(consumerFields.name),
  rateLimit: Type.Optional(Type.Union([ConsumerRateLimitSchema, Type.Null()]))
}, { additionalProperties: false, $id: 'ConsumerPatch' })
export type ConsumerPatch = Static<typeof ConsumerPatchSchema>

export const ConsumerSchema = Type.Object({
  id: Type.String(),
  ...consumerFields,
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' })
}, { $id: 'Consumer' })
export type Consumer = Static<typeof ConsumerSchema>

/** An API key as listed: never the key, never its hash. */
export const ApiKeySchema = Type.Object({
  id: Type.String(),
  consumerId: Type.String(),
  prefix: Type.String({ description: 'the first characters of the key, to tell keys apart' }),
  createdAt: Type.String({ format: 'date-time' })
}, { $id: 'ApiKey' })
export type ApiKey = Static<typeof ApiKeySchema>

/** The answer to creating a key: the only time the key itself is shown. */
export const NewApiKeySchema = Type.Object({
  id: Type.String(),
  key: Type.String({ description: 'shown only in this answer; the gateway keeps a SHA-256 hash' }),
  prefix: Type.String(),
  consumerId: Type.String(),
  createdAt: Type.String({ format: 'date-time' })
}, { $id: 'NewApiKey' })
export type NewApiKey = Static<typeof NewApiKeySchema>

export const KeyParamsSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 200, description: 'the consumer id or name' }),
  keyId: Type.String({ minLength: 1, maxLength: 200 })
})

/**
 * RFC 7617: the user-id cannot contain ':'; control characters would not survive the header.
 * Passwords: any printable text, 8–1024 characters (scrypt makes length cost nothing later).
 */
export const BasicInputSchema = Type.Object({
  username: Type.String({ pattern: '^[^:\\x00-\\x1f\\x7f]+$', minLength: 1, maxLength: 200 }),
  password: Type.String({ pattern: '^[^\\x00-\\x1f\\x7f]+$', minLength: 8, maxLength: 1024 })
}, { additionalProperties: false, $id: 'BasicInput' })
export type BasicInput = Static<typeof BasicInputSchema>

/** Basic credentials as shown: the username only. */
export const BasicCredentialSchema = Type.Object({
  consumerId: Type.String(),
  username: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' })
}, { $id: 'BasicCredential' })
export type BasicCredential = Static<typeof BasicCredentialSchema>

/**
 * A consumer in the /admin/config document: credentials appear as references only (ids,
 * prefixes, usernames), never as secrets. On import they are ignored: consumers that stay,
 * matched by name, keep the credentials they have; new consumers start without any.
 */
export const ConsumerDocumentSchema = defaultsOptional(Type.Object({
  id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  ...consumerFields,
  keys: Type.Optional(Type.Array(Type.Object({
    id: Type.String(),
    prefix: Type.String(),
    createdAt: Type.Optional(Type.String())
  }, { additionalProperties: false }))),
  basic: Type.Optional(Type.Union([Type.Object({ username: Type.String() }, { additionalProperties: false }), Type.Null()])),
  createdAt: Type.Optional(Type.String()),
  updatedAt: Type.Optional(Type.String())
}, { additionalProperties: false }))
export type ConsumerDocument = Static<typeof ConsumerDocumentSchema>
