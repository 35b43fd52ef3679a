import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { errorBody, type GatewayError } from './errors.js'
import type { GatewayContext, Outcome } from './gateway-context.js'

/**
 * Ends a proxied request from a hook with the gateway's JSON error and records why,
 * for the audit log. Policy hooks call this instead of done().
 */
export function reject (
  reply: FastifyReply,
  context: GatewayContext,
  statusCode: number,
  outcome: Outcome,
  message: string,
  headers?: Record<string, string>
): FastifyReply {
  context.outcome = outcome
  context.detail = message
  if (headers !== undefined) reply.headers(headers)
  return reply.code(statusCode).send(errorBody(statusCode, message, reply.request.id))
}

/** reject() for a GatewayError (upstream failures, body limit). */
export function rejectWith (reply: FastifyReply, context: GatewayContext, error: GatewayError, outcome: Outcome): FastifyReply {
  return reject(reply, context, error.statusCode, outcome, error.message, error.headers as Record<string, string>)
}

/**
 * Fastify's `frameworkErrors`: errors its router raises before any hook runs. The one a
 * client can provoke is FST_ERR_BAD_URL (a path find-my-way cannot percent-decode, e.g.
 * "/%zz"); Fastify's default answer is not the gateway's JSON and has no request id.
 */
export function frameworkError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const statusCode = error.code === 'FST_ERR_BAD_URL' ? 400 : error.statusCode ?? 500
  const message = error.code === 'FST_ERR_BAD_URL' ? 'malformed percent-escape in path' : statusCode >= 500 ? 'internal error' : error.message
  reply.code(statusCode).header('x-request-id', request.id).send(errorBody(statusCode, message, request.id))
}
