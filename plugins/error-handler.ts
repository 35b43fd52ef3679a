import fp from 'fastify-plugin'
import type { FastifyError, FastifyPluginAsync } from 'fastify'
import { errorBody, GatewayError } from '../lib/errors.js'

/**
 * The one error handler: every error becomes the contract's JSON shape with the request
 * id; messages are echoed below 500 and hidden at 500 and above (logged instead).
 */
const errorHandlerPlugin: FastifyPluginAsync = async (app) => {
  app.setErrorHandler((error: FastifyError | GatewayError, request, reply) => {
    const statusCode = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
    if (statusCode >= 500 && !(error instanceof GatewayError)) {
      request.log.error({ err: error }, 'request failed')
    }
    if (error instanceof GatewayError) reply.headers(error.headers)
    const message = statusCode >= 500 && !(error instanceof GatewayError) ? 'internal error' : error.message
    return reply.code(statusCode).send(errorBody(statusCode, message, request.id))
  })

  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).send(errorBody(404, `no endpoint ${request.method} ${request.url.split('?')[0]}`, request.id))
  })
}

export default fp(errorHandlerPlugin, { name: 'error-handler' })
