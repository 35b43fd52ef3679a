import fp from 'fastify-plugin'
import type { FastifyPluginAsync, onRequestHookHandler } from 'fastify'
import { resolveAdminTokenHash, tokenMatches } from '../lib/admin-token.js'
import { errorBody } from '../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook guarding /admin/* and /metrics with the admin bearer token. */
    requireAdmin: onRequestHookHandler
  }
}

const adminAuthPlugin: FastifyPluginAsync = async (app) => {
  const tokenHash = await resolveAdminTokenHash(app.db, app.config.adminToken, app.log)

  const requireAdmin: onRequestHookHandler = (request, reply, done) => {
    const header = request.headers.authorization
    // Node keeps only the first of two Authorization lines (traps.md #5): refuse, never guess.
    if (countHeader(request.raw.rawHeaders, 'authorization') > 1) {
      return void reply.code(400).send(errorBody(400, 'duplicate authorization header', request.id))
    }
    const authorized = typeof header === 'string' &&
      header.length > 7 && header.slice(0, 7).toLowerCase() === 'bearer ' &&
      tokenMatches(header.slice(7).trim(), tokenHash)
    if (authorized) return done()
    reply.code(401).header('www-authenticate', 'Bearer realm="gatehouse-admin"')
      .send(errorBody(401, header === undefined ? 'missing admin bearer token' : 'invalid admin bearer token', request.id))
  }
  app.decorate('requireAdmin', requireAdmin)
}

function countHeader (rawHeaders: readonly string[], lowerName: string): number {
  let count = 0
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i].toLowerCase() === lowerName) count++
  return count
}

export default fp(adminAuthPlugin, { name: 'admin-auth', dependencies: ['db'] })
