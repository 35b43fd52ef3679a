import fp from 'fastify-plugin'
import type { FastifyError, FastifyPluginAsync } from 'fastify'
import { databaseProblem } from '../lib/database-errors.js'
import { errorBody, GatewayError } from '../lib/errors.js'

/**
 * The one error handler: every error becomes the gateway's JSON shape with the request
 * id; messages are echoed below 500 and hidden at 500 and above (logged instead).
 */
const errorHandlerPlugin: FastifyPluginAsync = async (app) => {
  app.setErrorHandler((error: FastifyError | GatewayError, request, reply) => {
    const statusCode = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
    // A database that is away, full or locked is the database's problem, not ours: 503 naming
    // it, with Retry-After (docs/faults.md), never a 500.
    const database = statusCode === 500 ? databaseProblem(error) : null
    if (database !== null) {
      request.log.warn({ err: error }, 'database unavailable for this request')
      return reply.code(503).header('x-request-id', request.id).header('retry-after', String(database.retryAfterSeconds))
        .send(errorBody(503, database.message, request.id))
    }
    const decided = error instanceof GatewayError
    if (statusCode >= 500 && !decided) {
      request.log.error({ err: error }, 'request failed')
    }
    if (error instanceof GatewayError) reply.headers(error.headers)
    const message = statusCode >= 500 && !decided ? 'internal error' : error.message
    return reply.code(statusCode).header('x-request-id', request.id).send(errorBody(statusCode, message, request.id))
  })

  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).header('x-request-id', request.id)
      .send(errorBody(404, `no endpoint ${request.method} ${request.url.split('?')[0]}`, request.id))
  })
}

export default fp(errorHandlerPlugin, { name: 'error-handler' })
