import type { TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { preValidationHookHandler } from 'fastify'

/**
 * Ajv fills `default`s only outside anyOf, so a route's `healthCheck`, `rateLimit`, `cors`
 * and `auth` objects would otherwise miss theirs. This preValidation hook fills every
 * default of the body schema before Ajv validates it; invalid input stays invalid.
 */
export function fillBodyDefaults (schema: TSchema): preValidationHookHandler {
  return (request, _reply, done) => {
    if (request.body !== null && typeof request.body === 'object') request.body = Value.Default(schema, request.body)
    done()
  }
}
