import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { compileCompression } from './stage.js'

/**
 * Route `compression` (docs/transforms.md "Compression"): upstream answers compressed as they
 * stream, answers the gateway holds as a Buffer (cache hits) compressed once per encoding.
 */
const compressionPlugin: FastifyPluginAsync = async (app) => {
  app.routeTable.addStage('compression', compileCompression)
}

export default fp(compressionPlugin, { name: 'compression', dependencies: ['route-table'] })
