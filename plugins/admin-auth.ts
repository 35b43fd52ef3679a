import fp from 'fastify-plugin'
import type { FastifyPluginAsync, onRequestHookHandler } from 'fastify'
import { resolveAdminTokenHash, sha256, tokenMatches } from '../lib/admin-token.js'
import { errorBody } from '../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook guarding /admin/* and /metrics with the admin bearer token. */
    requireAdmin: onRequestHookHandler
  }
}

const adminAuthPlugin: FastifyPluginAsync = async (app) => {
  // A generated token's hash lives in the database; it is saved with the configuration
  // snapshot so a process that starts without the database still knows it (contract section 13).
  let tokenHash: Buffer | null = null
  await app.configChanges.track('admin-token', async () => {
    tokenHash = await resolveAdminTokenHash(app.db, app.config.adminToken, app.log)
    return app.config.adminToken === null ? tokenHash.toString('hex') : null
  }, (saved: string | null) => { if (saved !== null) tokenHash = Buffer.from(saved, 'hex') })
  if (app.config.adminToken !== null) tokenHash = sha256(app.config.adminToken)

  const requireAdmin: onRequestHookHandler = (request, reply, done) => {
    const header = request.headers.authorization
    // Node keeps only the first of two Authorization lines (traps.md #5): refuse, never guess.
    if (countHeader(request.raw.rawHeaders, 'authorization') > 1) {
      return void reply.code(400).send(errorBody(400, 'duplicate authorization header', request.id))
    }
    if (tokenHash === null) {
      return void reply.code(503).header('retry-after', '5')
        .send(errorBody(503, 'database unavailable: the generated admin token is not known until the database answers (or set ADMIN_TOKEN)', request.id))
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

export default fp(adminAuthPlugin, { name: 'admin-auth', dependencies: ['db', 'config-changes'] })
