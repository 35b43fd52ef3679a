import type { FastifyRequest } from 'fastify'
import { atMostEvery } from '../../lib/at-most-every.js'
import { GatewayError } from '../../lib/errors.js'
import type { GatewayContext } from '../../lib/gateway-context.js'
import { applyToHead, applyToHeaderList, type CompiledHeaderRules, compileHeaderRules, type TemplateValues } from '../../lib/header-rules.js'
import { compileRewrite, type CompiledRewrite, rewritePath } from '../../lib/path-rewrite.js'
import type { RouteStage } from '../../lib/pipeline.js'
import type { ResponseHead } from '../../lib/proxy-headers.js'
import type { Route } from '../../schemas/route.js'

/** A dropped header is logged at most this often per route and direction: a client sending bad values on purpose must not flood the log. */
const DROP_LOG_INTERVAL_MS = 10_000

function templateValues (request: FastifyRequest, context: GatewayContext): TemplateValues {
  const consumer = context.consumer
  return {
    clientIp: context.clientIp,
    requestId: request.id,
    consumerId: consumer?.id ?? '',
    consumerName: consumer?.name ?? ''
  }
}

/** Logs headers a rule could not send, at most every DROP_LOG_INTERVAL_MS. */
function dropLogger (route: Route, direction: 'request' | 'response'): (request: FastifyRequest, names: string[]) => void {
  const open = atMostEvery(DROP_LOG_INTERVAL_MS)
  let since = 0
  return (request, names) => {
    since++
    if (!open()) return
    request.log.warn({ route: route.name, direction, headers: names, droppedSinceLastLog: since },
      'header rule dropped: a value held a control or non-Latin-1 character after substitution (docs/transforms.md)')
    since = 0
  }
}

/**
 * `requestHeaders` and `rewrite` (docs/transforms.md): on the request about to go upstream, so
 * after auth (the credential header is already gone) and after stripPath.
 */
export function compileRequestTransforms (route: Route): RouteStage | null {
  const rules = route.requestHeaders ?? null
  const rewrite = route.rewrite ?? null
  if (rules === null && rewrite === null) return null
  const compiledRules: CompiledHeaderRules | null = rules === null ? null : compileHeaderRules(rules, route.name)
  const compiledRewrite: CompiledRewrite | null = rewrite === null ? null : compileRewrite(rewrite)
  const dropped = dropLogger(route, 'request')
  return {
    name: 'request-transforms',
    onUpstreamRequest (request, upstream) {
      if (compiledRewrite !== null) {
        const result = rewritePath(compiledRewrite, upstream.path)
        if (typeof result === 'string') upstream.path = result
        else if (result !== null) return new GatewayError(400, 'GW_REWRITE_REFUSED', result.refused)
      }
      if (compiledRules !== null) {
        const names = applyToHeaderList(compiledRules, upstream.headers, templateValues(request, request.gateway as GatewayContext))
        if (names !== null) dropped(request, names)
      }
      return null
    }
  }
}

const SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['x-content-type-options', 'nosniff'],
  ['x-frame-options', 'DENY'],
  ['referrer-policy', 'strict-origin-when-cross-origin']
]
const HSTS = 'max-age=31536000'

/** Security headers the answer lacks; HSTS only when the client came over HTTPS (as TRUST_PROXY decides it). */
function addSecurityHeaders (request: FastifyRequest, head: ResponseHead): void {
  for (const [name, value] of SECURITY_HEADERS) {
    if (head[name] === undefined) head[name] = value
  }
  if (request.protocol === 'https' && head['strict-transport-security'] === undefined) head['strict-transport-security'] = HSTS
}

/**
 * `securityHeaders`, then `responseHeaders` (docs/transforms.md): on every answer of the route,
 * before CORS has its word. The rules come last, so a route can still remove or replace one
 * of the security headers.
 */
export function compileResponseTransforms (route: Route): RouteStage | null {
  const rules = route.responseHeaders ?? null
  const security = route.securityHeaders === true
  if (rules === null && !security) return null
  const compiledRules: CompiledHeaderRules | null = rules === null ? null : compileHeaderRules(rules, route.name)
  const dropped = dropLogger(route, 'response')
  return {
    name: 'response-transforms',
    onResponseHead (request, head) {
      if (security) addSecurityHeaders(request, head)
      if (compiledRules === null) return
      const names = applyToHead(compiledRules, head, templateValues(request, request.gateway as GatewayContext))
      if (names !== null) dropped(request, names)
    }
  }
}
