import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifySchema } from 'fastify'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { errorBody } from '../lib/errors.js'
import { documentedOperation } from '../lib/openapi-operation.js'
import redoc from './redoc.js'

const DOCS_PAGES: Record<string, FastifySchema> = {
  '/docs': {
    tags: ['docs'],
    summary: 'Swagger UI: the API reference, rendered from /docs/json',
    response: { 200: { description: 'HTML page', content: { 'text/html': { schema: { type: 'string' } } } } }
  },
  '/docs/json': {
    tags: ['docs'],
    summary: 'This OpenAPI 3 document',
    response: { 200: { description: 'OpenAPI 3.0 document', content: { 'application/json': { schema: { type: 'object' } } } } }
  }
}

/** OpenAPI 3 document at /docs/json and Swagger UI at /docs. Registered before any route it describes. */
const swaggerPlugin: FastifyPluginAsync<{ version: string }> = async (app, options) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Gatehouse',
        description: 'Admin API of the Gatehouse API gateway. Every path not listed here is proxied traffic. ' +
          'This document is served at /docs/json and rendered by Swagger UI at /docs and by ReDoc at /redoc.',
        version: options.version,
        license: { name: 'MIT', url: 'https://opensource.org/license/mit' }
      },
      // Relative: the document describes the gateway that serves it, whatever its address.
      servers: [{ url: '/', description: 'this gateway' }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' }
        }
      }
    },
    // `/admin/routes/` (a prefixed plugin's "/" route) is documented as users type it.
    transform: ({ schema, url, route }) => {
      const path = url.length > 1 ? url.replace(/\/$/, '') : url
      // @fastify/swagger-ui hides its routes; the two a user opens are reserved endpoints too.
      const page = route.method === 'GET' ? DOCS_PAGES[path] : undefined
      return { schema: documentedOperation(page ?? schema, route.method, path), url: path }
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` }
  })
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', persistAuthorization: true } })
  await app.register(redoc)
  // Any other /docs/… or /redoc/… path is answered here: without this it would reach the
  // proxied catch-all.
  for (const prefix of ['/docs', '/redoc']) {
    app.route({
      method: ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'],
      url: `${prefix}/*`,
      exposeHeadRoute: false,
      schema: { hide: true },
      handler: async (request, reply) => reply.code(404).send(errorBody(404, `no documentation at ${request.url.split('?')[0]}`, request.id))
    })
  }
}

export default fp(swaggerPlugin, { name: 'swagger' })
