import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { compileBodyLimit } from './stage.js'

/**
 * Route `bodyLimit` (docs/routing.md "Forwarding"): every route has one, so every route runs this
 * stage. A chunked body is counted while it streams to the upstream (lib/forward.ts).
 */
const bodyLimitPlugin: FastifyPluginAsync = async (app) => {
  app.routeTable.addStage('body-limit', compileBodyLimit)
}

export default fp(bodyLimitPlugin, { name: 'body-limit', dependencies: ['route-table'] })
