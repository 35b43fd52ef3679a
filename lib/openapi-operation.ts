import { Type } from '@sinclair/typebox'
import type { FastifySchema } from 'fastify'
import { ErrorSchema } from '../schemas/common.js'

/** A route's schema as @fastify/swagger's `transform` sees it. */
interface OperationSchema {
  operationId?: string
  security?: readonly unknown[]
  body?: unknown
  querystring?: unknown
  params?: unknown
  response?: Record<string, unknown>
  [key: string]: unknown
}

function errorAnswer (description: string): ReturnType<typeof Type.Object> {
  return Type.Object(ErrorSchema.properties, { description })
}

const VALIDATION_FAILED = errorAnswer('Validation failed: the message names the field or query parameter')
const NOT_JSON = errorAnswer('The body is not application/json (the admin API takes JSON only)')
const LOCKED_OUT = errorAnswer('Too many failed admin token attempts from this client IP; Retry-After says for how long')

function capitalize (word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1)
}

/**
 * A stable operationId from the method and path: `GET /admin/routes/:id` → `getAdminRoutesById`.
 * Unique because method and path are; routes may set their own instead.
 */
export function operationIdFor (method: string | string[], url: string): string {
  const words = url.split('/').filter((segment) => segment !== '').map((segment) => segment.startsWith(':')
    ? `By${capitalize(segment.slice(1))}`
    : segment.split(/[^A-Za-z0-9]+/).map(capitalize).join(''))
  const verb = (Array.isArray(method) ? method.join('Or') : method).toLowerCase()
  return verb + words.join('')
}

/**
 * What every documented operation says without each route repeating it: an operationId,
 * `security: []` when the route needs no token, the 400 of any route that validates its input,
 * the 415 of a JSON body, and the 429 of the admin token's lockout (docs/admin-api.md "Brute-force limit").
 * Works on copies: the route's own schema, which validates requests, is never changed.
 */
export function documentedOperation (routeSchema: FastifySchema, method: string | string[], url: string): FastifySchema {
  const schema = routeSchema as OperationSchema
  const documented: OperationSchema = { ...schema, operationId: schema.operationId ?? operationIdFor(method, url) }
  const response: Record<string, unknown> = { ...schema.response }
  if (documented.security === undefined) documented.security = []
  if (schema.body !== undefined || schema.querystring !== undefined || schema.params !== undefined) response['400'] ??= VALIDATION_FAILED
  if (schema.body !== undefined) response['415'] ??= NOT_JSON
  if (documented.security.length > 0) response['429'] ??= LOCKED_OUT
  documented.response = response
  return documented as FastifySchema
}
