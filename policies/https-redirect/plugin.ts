import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { httpsRedirectCompiler } from './stage.js'

/** Route `httpsRedirect` (docs/tls.md "Redirecting to HTTPS"): only routes that set it run the stage. */
const httpsRedirectPlugin: FastifyPluginAsync = async (app) => {
  app.routeTable.addStage('https-redirect', httpsRedirectCompiler(app.config.tlsPort))
}

export default fp(httpsRedirectPlugin, { name: 'https-redirect', dependencies: ['route-table'] })
