import { Kind, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { FormatRegistry } from '@sinclair/typebox'
import { type ValueError, ValueErrorType } from '@sinclair/typebox/errors'
import type { preValidationHookHandler } from 'fastify'
import { GatewayError } from '../lib/errors.js'

/**
 * Admin request bodies are checked here, before Fastify's Ajv sees them, for two reasons:
 *
 * - Ajv fills `default`s only outside anyOf, so a route's `healthCheck`, `rateLimit`, `cors`
 *   and `auth` objects would miss theirs; fillDefaults() fills every default, choosing the
 *   union branch by its literal `type` (or the one object branch of a nullable object).
 * - Fastify's Ajv coerces types (`coerceTypes: 'array'`, needed for query strings), so a JSON
 *   body with `"retries": null` or `"hosts": "a.com"` would be silently accepted as 0 or
 *   ["a.com"]. TypeBox's checker never coerces, and its union errors keep every branch, so the
 *   400 can name the one field that is wrong instead of listing every branch of every union.
 */

// Formats are checked by Ajv right after this check (ajv-formats); TypeBox only has to not refuse them.
for (const format of ['date-time', 'date', 'time', 'email', 'uri', 'uuid', 'ipv4', 'ipv6', 'hostname']) {
  if (!FormatRegistry.Has(format)) FormatRegistry.Set(format, () => true)
}

type JsonSchema = TSchema & {
  type?: string | string[]
  properties?: Record<string, TSchema>
  items?: TSchema
  anyOf?: TSchema[]
  const?: unknown
  default?: unknown
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The object schemas a union can be, nested unions flattened. */
function objectBranches (schema: JsonSchema): JsonSchema[] {
  const branches: JsonSchema[] = []
  for (const branch of schema.anyOf ?? []) {
    const candidate = branch as JsonSchema
    if (candidate.anyOf !== undefined) branches.push(...objectBranches(candidate))
    else if (candidate.type === 'object') branches.push(candidate)
  }
  return branches
}

/** The branch whose literal-valued property (e.g. `type`) matches, or the only object branch. */
function chooseBranch (schema: JsonSchema, value: Record<string, unknown>): JsonSchema | undefined {
  const branches = objectBranches(schema)
  const discriminated = branches.filter((branch) => Object.entries(branch.properties ?? {})
    .some(([, property]) => (property as JsonSchema).const !== undefined))
  if (discriminated.length > 0) {
    return discriminated.find((branch) => Object.entries(branch.properties ?? {})
      .every(([key, property]) => (property as JsonSchema).const === undefined || (property as JsonSchema).const === value[key]))
  }
  return branches.length === 1 ? branches[0] : undefined
}

/** Fills every missing value that has a default, also inside unions. Mutates objects in place. */
export function fillDefaults (schema: TSchema, value: unknown): unknown {
  const s = schema as JsonSchema
  if (value === undefined && s.default !== undefined) value = structuredClone(s.default)
  if (value === undefined || value === null) return value
  if (s.anyOf !== undefined) {
    const branch = isPlainObject(value) ? chooseBranch(s, value) : undefined
    return branch === undefined ? value : fillDefaults(branch, value)
  }
  if (s.type === 'object' && s.properties !== undefined && isPlainObject(value)) {
    for (const [key, property] of Object.entries(s.properties)) {
      const filled = fillDefaults(property, value[key])
      if (filled !== undefined) value[key] = filled
    }
  } else if (s.type === 'array' && s.items !== undefined && Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = fillDefaults(s.items, value[i])
  }
  return value
}

/**
 * A property with a default is optional to the client (fillDefaults supplies it before the
 * check), but TypeBox lists it as required, and so would the OpenAPI document. Rewrites
 * `required` in place, recursively; the static type keeps the field (it is always filled).
 */
export function defaultsOptional<T extends TSchema> (schema: T): T {
  const s = schema as JsonSchema & { required?: string[] }
  if (s.properties !== undefined) {
    if (s.required !== undefined) {
      const required = s.required.filter((key) => (s.properties as Record<string, JsonSchema>)[key]?.default === undefined)
      if (required.length > 0) s.required = required
      else delete s.required
    }
    for (const property of Object.values(s.properties)) defaultsOptional(property)
  }
  if (s.items !== undefined) defaultsOptional(s.items)
  for (const branch of s.anyOf ?? []) defaultsOptional(branch)
  return schema
}

const checks = new WeakMap<TSchema, TypeCheck<TSchema>>()

function compiled (schema: TSchema): TypeCheck<TSchema> {
  let check = checks.get(schema)
  if (check === undefined) {
    check = TypeCompiler.Compile(schema)
    checks.set(schema, check)
  }
  return check
}

/**
 * Defaults filled, then checked strictly. Returns the filled value, or a message naming
 * the first wrong field, e.g. `body/targets/0/url must match pattern "^https?://…"`.
 * `name` is how the value is called in messages ("body", "routes/3").
 */
export function checkValue (schema: TSchema, value: unknown, name: string): { ok: true, value: unknown } | { ok: false, message: string } {
  const filled = fillDefaults(schema, value)
  const check = compiled(schema)
  if (check.Check(filled)) return { ok: true, value: filled }
  if (filled === undefined || filled === null) return { ok: false, message: `${name} is required: send a JSON object` }
  const first = check.Errors(filled).First()
  /* c8 ignore next -- Check() failed, so there is at least one error */
  if (first === undefined) return { ok: false, message: `${name} is invalid` }
  const problem = describe(first)
  return { ok: false, message: `${name}${problem.path} ${problem.message}` }
}

interface Problem {
  path: string
  message: string
  /** The value is of another kind than this branch expects (a union tries the next branch). */
  mismatch: boolean
}

const TYPE_NAMES: Partial<Record<ValueErrorType, string>> = {
  [ValueErrorType.Array]: 'an array',
  [ValueErrorType.Boolean]: 'a boolean',
  [ValueErrorType.Integer]: 'an integer',
  [ValueErrorType.Null]: 'null',
  [ValueErrorType.Number]: 'a number',
  [ValueErrorType.Object]: 'an object',
  [ValueErrorType.String]: 'a string'
}

function parentOf (path: string): string {
  return path.slice(0, path.lastIndexOf('/'))
}

/** One TypeBox error as a short message; unions answer for the branch the value was meant for. */
function describe (error: ValueError): Problem {
  const schema = error.schema as JsonSchema & Record<string, unknown>
  const problem = (message: string, mismatch = false): Problem => ({ path: error.path, message, mismatch })
  switch (error.type) {
    case ValueErrorType.Union: return describeUnion(error)
    case ValueErrorType.Literal: return problem(`must be ${JSON.stringify(schema.const)}`, true)
    case ValueErrorType.ObjectRequiredProperty: return problem('is required')
    case ValueErrorType.ObjectAdditionalProperties: return problem('is not a known field')
    case ValueErrorType.StringPattern: return problem(`must match pattern "${String(schema.pattern)}"`)
    case ValueErrorType.StringFormat: return problem(`must be a ${String(schema.format)} string`)
    case ValueErrorType.StringMinLength: return problem(`must be at least ${String(schema.minLength)} characters long`)
    case ValueErrorType.StringMaxLength: return problem(`must be at most ${String(schema.maxLength)} characters long`)
    case ValueErrorType.ArrayMinItems: return problem(`must have at least ${String(schema.minItems)} item${schema.minItems === 1 ? '' : 's'}`)
    case ValueErrorType.ArrayMaxItems: return problem(`must have at most ${String(schema.maxItems)} items`)
    case ValueErrorType.ArrayUniqueItems: return problem('must not repeat items')
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum: return problem(`must be >= ${String(schema.minimum)}`)
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum: return problem(`must be <= ${String(schema.maximum)}`)
    default: {
      const typeName = TYPE_NAMES[error.type]
      if (typeName !== undefined) return problem(`must be ${typeName}`, true)
      return problem(error.message.replace(/^Expected/, 'must be').toLowerCase())
    }
  }
}

function describeUnion (error: ValueError): Problem {
  const branches: Problem[] = []
  for (const iterator of error.errors) {
    const errors = [...iterator]
    if (errors.length === 0) continue
    // A literal property one level down that does not match is a discriminator (`auth.type`):
    // the value was meant for another branch, whatever else that branch complains about first.
    const discriminator = errors.find((e) => e.type === ValueErrorType.Literal && parentOf(e.path) === error.path)
    if (discriminator !== undefined) {
      branches.push({ ...describe(discriminator), mismatch: true })
      continue
    }
    const problem = describe(errors[0])
    if (!(problem.mismatch && problem.path === error.path)) return problem
    branches.push(problem)
  }
  if (branches.length === 1) return branches[0]
  const literals = branches.length > 0 && branches.every((branch) => branch.path === branches[0].path && branch.message.startsWith('must be "'))
  if (literals) {
    const allowed = branches.map((branch) => branch.message.slice('must be '.length)).join(', ')
    // Only a mismatch of an enclosing union when it is about this very value, so that
    // `rateLimit.by` keeps its message inside the nullable `rateLimit` union.
    return { path: branches[0].path, message: `must be one of ${allowed}`, mismatch: branches[0].path === error.path }
  }
  const kinds = [...new Set(branches.map((branch) => branch.message.replace(/^must be /, '')))]
  return { path: error.path, message: `must be ${kinds.join(' or ')}`, mismatch: true }
}

/**
 * preValidation hook of the admin scope: fills defaults and checks the route's body schema
 * strictly (see above); Ajv then validates a body that is already right.
 */
export const checkBody: preValidationHookHandler = (request, _reply, done) => {
  const schema = request.routeOptions.schema?.body as TSchema | undefined
  if (schema === undefined || (schema as unknown as Record<symbol, unknown>)[Kind] === undefined) return done()
  const result = checkValue(schema, request.body, 'body')
  if (!result.ok) return done(new GatewayError(400, 'GW_VALIDATION', result.message))
  request.body = result.value
  done()
}

/** Kept for route files that fill a body's defaults themselves; checkBody already does in /admin. */
export function fillBodyDefaults (schema: TSchema): preValidationHookHandler {
  return (request, _reply, done) => {
    if (request.body !== null && typeof request.body === 'object') request.body = fillDefaults(schema, request.body)
    done()
  }
}
