import { compileAuthPolicy, type PolicyDependencies } from '../../lib/auth/policy.js'
import type { GatewayContext } from '../../lib/gateway-context.js'
import type { RouteStage } from '../../lib/pipeline.js'
import type { Route } from '../../schemas/route.js'

/**
 * The route's auth stage (lib/auth/policy.ts holds the three kinds), or none for
 * `auth.type: "none"`. It either sets the consumer and the credential headers to strip and
 * goes on, or answers 401/403 (503 while scrypt is saturated).
 */
export function compileAuthStage (route: Route, dependencies: PolicyDependencies): RouteStage | null {
  const policy = compileAuthPolicy(route, dependencies)
  if (policy === null) return null
  return {
    name: 'auth',
    onRequest (request, reply, done) { policy.authenticate(request, reply, request.gateway as GatewayContext, done) }
  }
}
