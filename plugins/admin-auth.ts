import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import type { FastifyPluginAsync, onRequestAsyncHookHandler } from 'fastify'
import { resolveAdminTokenHash, sha256, tokenMatches } from '../lib/admin-token.js'
import { errorBody, GatewayError } from '../lib/errors.js'
import { FailureWindow, failureStore } from '../lib/failure-window.js'
import { bearerToken, countRawHeader } from '../lib/request-headers.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook guarding /admin/* and /metrics with the admin bearer token. */
    requireAdmin: onRequestAsyncHookHandler
  }
}

const FAILURE_WINDOW_MS = 60_000

const adminAuthPlugin: FastifyPluginAsync = async (app) => {
  // A generated token's hash lives in the database; it is saved with the configuration
  // snapshot so a process that starts without the database still knows it (docs/faults.md).
  let tokenHash: Buffer | null = null
  await app.configChanges.track('admin-token', async () => {
    tokenHash = await resolveAdminTokenHash(app.db, app.config.adminToken, app.log)
    return app.config.adminToken === null ? tokenHash.toString('hex') : null
  }, (saved: string | null) => { if (saved !== null) tokenHash = Buffer.from(saved, 'hex') })
  if (app.config.adminToken !== null) tokenHash = sha256(app.config.adminToken)

  // Brute-force guard (docs/admin-api.md): an IP with more than ADMIN_AUTH_MAX_FAILURES failed
  // attempts in its current minute is refused with 429, right token or not, until the minute
  // ends. @fastify/rate-limit decides and answers; its store only reads the failures counted
  // below, so successful requests never use up the allowance. Counted per process.
  const failures = new FailureWindow(FAILURE_WINDOW_MS)
  await app.register(rateLimit, {
    global: false,
    store: failureStore(failures),
    max: app.config.adminAuthMaxFailures,
    timeWindow: FAILURE_WINDOW_MS,
    // request.ip is the client as TRUST_PROXY decides it.
    keyGenerator: (request) => request.ip,
    addHeaders: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false, 'retry-after': true },
    addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
    errorResponseBuilder: (request, context) => new GatewayError(429, 'GW_ADMIN_AUTH_LIMITED',
      `more than ${context.max} failed admin token attempts from ${request.ip} within a minute; retry in ${Math.ceil(context.ttl / 1000)} s`)
  })
  // Options live on the registration above: the plugin builds its store there, once.
  const refuseLimitedClient = app.rateLimit()

  const requireAdmin: onRequestAsyncHookHandler = async (request, reply) => {
    await refuseLimitedClient.call(app, request, reply)
    const header = request.headers.authorization
    // Node keeps only the first of two Authorization lines: refuse, never guess.
    if (countRawHeader(request.raw.rawHeaders, 'authorization') > 1) {
      return reply.code(400).send(errorBody(400, 'duplicate authorization header', request.id))
    }
    if (tokenHash === null) {
      return reply.code(503).header('retry-after', '5')
        .send(errorBody(503, 'database unavailable: the generated admin token is not known until the database answers (or set ADMIN_TOKEN)', request.id))
    }
    const token = typeof header === 'string' ? bearerToken(header) : null
    const authorized = token !== null && tokenMatches(token, tokenHash)
    if (authorized) return
    // A request without a token guesses nothing; only a wrong token is a failed attempt.
    if (header !== undefined) failures.record(request.ip)
    return reply.code(401).header('www-authenticate', 'Bearer realm="gatehouse-admin"')
      .send(errorBody(401, header === undefined ? 'missing admin bearer token' : 'invalid admin bearer token', request.id))
  }
  app.decorate('requireAdmin', requireAdmin)
}

export default fp(adminAuthPlugin, { name: 'admin-auth', dependencies: ['db', 'config-changes'] })
