import type { GatewayContext } from '../../lib/gateway-context.js'
import { reject } from '../../lib/gateway-reply.js'
import type { CompileStage } from '../../lib/pipeline.js'

/**
 * Route `httpsRedirect` (docs/tls.md "Redirecting to HTTPS"): a request that did not arrive
 * over https — on the plain listener, and not from a trusted proxy saying X-Forwarded-Proto:
 * https (TRUST_PROXY) — is answered 308 to the same host, path and query on https; the port
 * is TLS_PORT unless it is 443 (or unset). 308 keeps the method and body, unlike 301.
 */
export function httpsRedirectCompiler (tlsPort: () => number | null): CompileStage {
  return (route) => {
    if (!route.httpsRedirect) return null
    return {
      name: 'https-redirect',
      onRequest (request, reply, done) {
        if (request.protocol === 'https') return done()
        const context = request.gateway as GatewayContext
        if (context.host === '') return void reject(reply, context, 400, 'blocked', 'this route is served over https; a Host header is needed to redirect there')
        const port = tlsPort()
        const location = `https://${context.host}${port === null || port === 443 ? '' : `:${port}`}${request.raw.url ?? '/'}`
        reject(reply, context, 308, 'proxied', `this route is served over https: ${location}`, { location })
      }
    }
  }
}
