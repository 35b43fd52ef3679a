import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { sql } from 'kysely'
import { Type } from '@sinclair/typebox'
import { databaseProblem } from '../lib/database-errors.js'
import { ErrorSchema } from '../schemas/common.js'

/** A database that takes longer than this to answer `select 1` is not ready. */
const READY_QUERY_TIMEOUT_MS = 2000

async function withTimeout<T> (work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`database unavailable: no answer within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export interface Readiness {
  readonly draining: boolean
  /** From now on /ready answers 503 (SIGTERM; README "Shutdown"). */
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
    // While the config poll finds the database away (or this process has not loaded from it
    // since start), say so at once: a load balancer's check must not wait for a connect timeout.
    const known = app.dbState.problem ?? (app.configChanges.loaded ? null : 'database unavailable: configuration not loaded from it yet')
    if (known !== null) {
      return reply.code(503).header('retry-after', '5').send({ statusCode: 503, error: 'Service Unavailable', message: known, requestId: request.id })
    }
    try {
      await withTimeout(sql`select 1`.execute(app.db), READY_QUERY_TIMEOUT_MS)
    } catch (err) {
      request.log.warn({ err }, 'readiness: database did not answer')
      const message = databaseProblem(err)?.message ?? 'database unavailable'
      return reply.code(503).header('retry-after', '5').send({ statusCode: 503, error: 'Service Unavailable', message, requestId: request.id })
    }
    return { status: 'ready' as const }
  })
}

export default fp(healthPlugin, { name: 'health', dependencies: ['db', 'config-changes'] })
