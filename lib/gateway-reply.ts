import type { FastifyReply } from 'fastify'
import { errorBody, type GatewayError } from './errors.js'
import type { GatewayContext, Outcome } from './gateway-context.js'

/**
 * Ends a proxied request from a hook with the contract's JSON error and records why,
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
