import type { FastifyBaseLogger, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { JWTPayload } from 'jose'
import type { ConsumerIdentity, GatewayContext } from '../gateway-context.js'
import { reject } from '../gateway-reply.js'
import { bearerToken, countRawHeader } from '../request-headers.js'
import type { Route } from '../../schemas/route.js'
import { hashApiKey, looksLikeApiKey } from './api-key.js'
import { type BasicVerifier, parseBasicAuthorization } from './basic.js'
import type { CredentialStore } from './credential-store.js'
import { createJwtVerifier, describeJwtError, type JwksRegistry, type JwtAuth, type JwtVerifier, looksLikeJwt, type TokenCacheOptions } from './jwt.js'
import { BusyError } from './password.js'

/**
 * A route's auth policy, compiled once when the route is loaded. authenticate() either
 * sets `context.consumer` and `context.strippedHeaders` and calls done(), or ends the
 * request through reject(). Messages to the client are the same for every kind of wrong
 * credential (malformed, unknown, revoked, expired, wrong audience …); the precise reason
 * goes to the audit log's `detail` only.
 */
export interface AuthPolicy {
  authenticate: (request: FastifyRequest, reply: FastifyReply, context: GatewayContext, done: HookHandlerDoneFunction) => void
}

export interface PolicyDependencies {
  store: () => CredentialStore
  basic: BasicVerifier
  jwks: JwksRegistry
  /** Verified JWTs remembered per route (lib/auth/jwt.ts). */
  jwtCache: TokenCacheOptions
  log: FastifyBaseLogger
}

export const MISSING_CREDENTIALS = 'missing credentials'
export const INVALID_CREDENTIALS = 'invalid credentials'

const REALM = 'gatehouse'
const AUTHORIZATION_ONLY: readonly string[] = Object.freeze(['authorization'])
/** Header names proxy.ts already refuses in duplicate (Node would keep the first). */
const CHECKED_BY_PROXY = new Set(['authorization', 'x-api-key'])

/** null for `type: "none"`. */
export function compileAuthPolicy (route: Route, deps: PolicyDependencies): AuthPolicy | null {
  const auth = route.auth
  switch (auth.type) {
    case 'api-key': return new ApiKeyPolicy(auth.header, deps.store)
    case 'basic': return new BasicPolicy(auth.realm, deps.basic)
    case 'jwt': return new JwtPolicy(auth, deps)
    default: return null
  }
}

function unauthorized (reply: FastifyReply, context: GatewayContext, challenge: Record<string, string>, message: string, detail: string): void {
  reject(reply, context, 401, 'unauthorized', message, challenge)
  context.detail = detail
}

function admit (context: GatewayContext, consumer: ConsumerIdentity, stripped: readonly string[], done: HookHandlerDoneFunction): void {
  context.consumer = consumer
  context.strippedHeaders = stripped as string[]
  done()
}

const bearerChallenge = { 'www-authenticate': `Bearer realm="${REALM}"` }
const invalidBearerChallenge = { 'www-authenticate': `Bearer realm="${REALM}", error="invalid_token"` }

/** Key from the route's header (default x-api-key) or `Authorization: Bearer <key>` (docs/auth.md "Route auth"). */
class ApiKeyPolicy implements AuthPolicy {
  /** null when the configured header is Authorization itself: then only the Bearer form counts. */
  private readonly header: string | null
  private readonly strippedOwn: readonly string[]
  private readonly checkDuplicates: boolean

  constructor (header: string, private readonly store: () => CredentialStore) {
    const lower = header.toLowerCase()
    this.header = lower === 'authorization' ? null : lower
    this.strippedOwn = Object.freeze([lower])
    // Node joins repeated unknown headers into "a, b"; proxy.ts only checks the well-known ones.
    this.checkDuplicates = !CHECKED_BY_PROXY.has(lower)
  }

  authenticate (request: FastifyRequest, reply: FastifyReply, context: GatewayContext, done: HookHandlerDoneFunction): void {
    const headers = request.raw.headers
    let key = this.header === null ? undefined : headers[this.header] as string | undefined
    let stripped = this.strippedOwn
    if (key !== undefined) {
      if (this.checkDuplicates && countRawHeader(request.raw.rawHeaders, this.header as string) > 1) {
        return void reject(reply, context, 400, 'blocked', `duplicate ${this.header as string} header`)
      }
    } else {
      const authorization = headers.authorization
      if (authorization === undefined) return unauthorized(reply, context, bearerChallenge, MISSING_CREDENTIALS, MISSING_CREDENTIALS)
      const token = bearerToken(authorization)
      if (token === null) return unauthorized(reply, context, invalidBearerChallenge, INVALID_CREDENTIALS, 'authorization is not a bearer credential')
      key = token
      stripped = AUTHORIZATION_ONLY
    }
    if (!looksLikeApiKey(key)) return unauthorized(reply, context, invalidBearerChallenge, INVALID_CREDENTIALS, 'malformed api key')
    const consumer = this.store().byKeyHash.get(hashApiKey(key))
    if (consumer === undefined) return unauthorized(reply, context, invalidBearerChallenge, INVALID_CREDENTIALS, 'unknown or revoked api key')
    admit(context, consumer, stripped, done)
  }
}

/** Header values cannot carry characters above U+00FF, and quotes would end the realm. */
function headerSafeRealm (realm: string): string {
  return realm.replace(/[^\x20-\x7e]|["\\]/g, '?')
}

class BasicPolicy implements AuthPolicy {
  private readonly challenge: Record<string, string>

  constructor (realm: string, private readonly verifier: BasicVerifier) {
    this.challenge = { 'www-authenticate': `Basic realm="${headerSafeRealm(realm)}", charset="UTF-8"` }
  }

  authenticate (request: FastifyRequest, reply: FastifyReply, context: GatewayContext, done: HookHandlerDoneFunction): void {
    const header = request.raw.headers.authorization
    if (header === undefined) return unauthorized(reply, context, this.challenge, MISSING_CREDENTIALS, MISSING_CREDENTIALS)
    const credentials = parseBasicAuthorization(header)
    if (credentials === null) return unauthorized(reply, context, this.challenge, INVALID_CREDENTIALS, 'malformed basic credentials')
    const result = this.verifier.verify(credentials)
    if (result === null) return unauthorized(reply, context, this.challenge, INVALID_CREDENTIALS, 'wrong username or password')
    if (!(result instanceof Promise)) return admit(context, result, AUTHORIZATION_ONLY, done)
    result.then((consumer) => {
      if (consumer === null) unauthorized(reply, context, this.challenge, INVALID_CREDENTIALS, 'wrong username or password')
      else admit(context, consumer, AUTHORIZATION_ONLY, done)
    }, (err: unknown) => {
      if (err instanceof BusyError) {
        reject(reply, context, 503, 'unauthorized', 'authentication is busy, retry shortly', { 'retry-after': '1' })
      } else {
        done(err as Error)
      }
    })
  }
}

/** A claim value passed upstream as X-Consumer-Name must be a plain, visible header value. */
const CLAIM_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]{0,254}[\x21-\x7e])?$/

class JwtPolicy implements AuthPolicy {
  private readonly verifier: JwtVerifier
  private readonly claim: string
  private readonly store: () => CredentialStore
  private readonly log: FastifyBaseLogger

  constructor (auth: JwtAuth, deps: PolicyDependencies) {
    this.verifier = createJwtVerifier(auth, deps.jwks, deps.jwtCache)
    this.claim = auth.consumerClaim
    this.store = deps.store
    this.log = deps.log
  }

  authenticate (request: FastifyRequest, reply: FastifyReply, context: GatewayContext, done: HookHandlerDoneFunction): void {
    const header = request.raw.headers.authorization
    if (header === undefined) return unauthorized(reply, context, bearerChallenge, MISSING_CREDENTIALS, MISSING_CREDENTIALS)
    const token = bearerToken(header)
    if (token === null || !looksLikeJwt(token)) return unauthorized(reply, context, invalidBearerChallenge, INVALID_CREDENTIALS, 'malformed bearer token')
    const cached = this.verifier.cached(token)
    if (cached !== undefined) return this.admitClaim(cached, reply, context, done)
    this.verifier.verify(token).then((payload) => {
      this.admitClaim(payload, reply, context, done)
    }, (err: unknown) => {
      const { reason, tokenFault } = describeJwtError(err)
      if (!tokenFault) this.log.warn({ err, routeId: context.route?.id }, 'jwt verification failed for a reason other than the token (JWKS unreachable?)')
      unauthorized(reply, context, invalidBearerChallenge, INVALID_CREDENTIALS, `invalid jwt: ${reason}`)
    })
  }

  private admitClaim (payload: JWTPayload, reply: FastifyReply, context: GatewayContext, done: HookHandlerDoneFunction): void {
    const value = payload[this.claim]
    if (typeof value !== 'string' || !CLAIM_VALUE.test(value)) {
      return unauthorized(reply, context, invalidBearerChallenge, INVALID_CREDENTIALS, `claim ${this.claim} missing or not a plain string`)
    }
    // A registered consumer by that name, else the value passed through as a name only (docs/auth.md "JWT").
    const consumer = this.store().byName.get(value) ?? { id: null, name: value, rateLimit: null }
    admit(context, consumer, AUTHORIZATION_ONLY, done)
  }
}
