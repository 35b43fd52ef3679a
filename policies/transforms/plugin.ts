import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { compileRequestTransforms, compileResponseTransforms } from './stage.js'

/**
 * Route `requestHeaders`, `rewrite`, `responseHeaders` and `securityHeaders` (docs/transforms.md):
 * two stages, one on the request going upstream, one on the answer's head. A route without
 * these fields gets neither.
 */
const transformsPlugin: FastifyPluginAsync = async (app) => {
  app.routeTable.addStage('request-transforms', compileRequestTransforms)
  app.routeTable.addStage('response-transforms', compileResponseTransforms)
}

export default fp(transformsPlugin, { name: 'transforms', dependencies: ['route-table'] })
