import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { sql } from 'kysely'
import { Type } from '@sinclair/typebox'
import { ErrorSchema } from '../schemas/common.js'

export interface Readiness {
  readonly draining: boolean
  /** From now on /ready answers 503 (SIGTERM; contract section 1). */
  drain: () => void
}

declare module 'fastify' {
  interface FastifyInstance {
    readiness: Readiness
  }
}

const healthPlugin: FastifyPluginAsync = async (app) => {
  let draining = false
  app.decorate('readiness', {
    get draining () { return draining },
    drain () { draining = true }
  })

  app.get('/health', {
    schema: {
      tags: ['health'],
      summary: 'Liveness: 200 while the process lives',
      response: { 200: Type.Object({ status: Type.Literal('ok') }) }
    }
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    schema: {
      tags: ['health'],
      summary: 'Readiness: 200 when the database answers and the instance is not draining',
      response: { 200: Type.Object({ status: Type.Literal('ready') }), 503: ErrorSchema }
    }
  }, async (request, reply) => {
    if (draining) {
      reply.header('connection', 'close')
      return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: 'draining: shutting down', requestId: request.id })
    }
    try {
      await sql`select 1`.execute(app.db)
    } catch (err) {
      request.log.warn({ err }, 'readiness: database did not answer')
      return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: 'database unavailable', requestId: request.id })
    }
    return { status: 'ready' as const }
  })
}

export default fp(healthPlugin, { name: 'health', dependencies: ['db'] })
