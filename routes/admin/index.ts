import cors from '@fastify/cors'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RequestPayload } from 'fastify'
import { adminCorsOptions } from '../../lib/admin-cors.js'
import { errorBody } from '../../lib/errors.js'
import { schemaErrorMessage } from '../../lib/schema-errors.js'
import { sendContinue } from '../../lib/expect-continue.js'
import { checkBody } from '../../schemas/defaults.js'
import auditAdmin from './audit.js'
import cacheAdmin from './cache.js'
import configHistoryAdmin from './config-history.js'
import certificatesAdmin from './certificates.js'
import consumersAdmin from './consumers.js'
import egressRulesAdmin from './egress-rules.js'
import filtersAdmin from './filters.js'
import instancesAdmin from './instances.js'
import rateLimitsAdmin from './rate-limits.js'
import routesAdmin from './routes.js'
import statusAdmin from './status.js'
import systemAdmin from './system.js'

/**
 * /admin/*: one encapsulated scope so the admin-token hook covers every resource here and
 * nothing outside. CORS only for the exact origins of ADMIN_CORS_ORIGINS; without any, no CORS
 * plugin is registered here: the admin API never answers a preflight permissively
 * (docs/admin-api.md "CORS").
 */
export default async function admin (app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', echoRequestId)
  // Before the token check: a browser's preflight carries no Authorization header.
  if (app.config.adminCorsOrigins.length > 0) await app.register(cors, adminCorsOptions(app.config.adminCorsOrigins))
  app.addHook('onRequest', app.requireAdmin)
  // JSON in and out (docs/admin-api.md "Common rules"): any other body type is 415, not a string to validate.
  app.removeContentTypeParser('text/plain')
  // `curl -X DELETE -H 'content-type: application/json'` sends no body: not an error here; a
  // route that needs a body says so itself ("body is required").
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, undefined)
    parseJson(request, body as string, done)
  })
  // A 400 names the unknown query parameter instead of "must NOT have additional properties".
  app.setSchemaErrorFormatter(schemaErrorMessage)
  // Every body is checked strictly (no type coercion) with defaults filled; see schemas/defaults.ts.
  app.addHook('preValidation', checkBody)
  // The deferred 100 Continue (lib/expect-continue.ts), once the token passed and the declared
  // body is within the limit: never before a 401 or a 413.
  app.addHook('preParsing', continueIfWithinLimit)

  await app.register(routesAdmin, { prefix: '/routes' })
  await app.register(consumersAdmin, { prefix: '/consumers' })
  await app.register(filtersAdmin, { prefix: '/filters' })
  await app.register(certificatesAdmin, { prefix: '/certificates' })
  await app.register(egressRulesAdmin, { prefix: '/egress-rules' })
  await app.register(rateLimitsAdmin, { prefix: '/rate-limits' })
  await app.register(systemAdmin)
  await app.register(configHistoryAdmin, { prefix: '/config' })
  await app.register(auditAdmin, { prefix: '/audit' })
  await app.register(statusAdmin)
  await app.register(instancesAdmin)
  await app.register(cacheAdmin)

  // An unknown /admin path is answered here, after the token check, and never reaches the
  // proxied scope's catch-all (which would otherwise take it as proxied traffic).
  app.route({ method: ADMIN_METHODS, url: '/', exposeHeadRoute: false, schema: { hide: true }, handler: unknownAdminPath })
  app.route({ method: ADMIN_METHODS, url: '/*', exposeHeadRoute: false, schema: { hide: true }, handler: unknownAdminPath })
}

const ADMIN_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS']

function continueIfWithinLimit (request: FastifyRequest, reply: FastifyReply, payload: RequestPayload, done: (err: null, payload: RequestPayload) => void): void {
  const declared = request.headers['content-length']
  if (declared === undefined || Number(declared) <= request.routeOptions.bodyLimit) sendContinue(request.raw, reply.raw)
  done(null, payload)
}

function echoRequestId (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  reply.header('x-request-id', request.id)
  done()
}

async function unknownAdminPath (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  return reply.code(404).send(errorBody(404, `no admin endpoint ${request.method} ${request.url.split('?')[0]}`, request.id))
}
