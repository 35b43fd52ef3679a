import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { httpsRedirectCompiler } from './stage.js'

/** Route `httpsRedirect` (docs/tls.md "Redirecting to HTTPS"): only routes that set it run the stage. */
const httpsRedirectPlugin: FastifyPluginAsync = async (app) => {
  // The HTTPS listener's port once it listens (tests listen on port 0), else TLS_PORT.
  app.routeTable.addStage('https-redirect', httpsRedirectCompiler(() => app.hasDecorator('tlsListener') ? app.tlsListener?.port ?? app.config.tlsPort : app.config.tlsPort))
}

export default fp(httpsRedirectPlugin, { name: 'https-redirect', dependencies: ['route-table'] })
