import { createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyOptions, type RemoteJWKSet } from 'jose'
import type { RouteAuth } from '../../schemas/route.js'

export type JwtAuth = Extract<RouteAuth, { type: 'jwt' }>

/**
 * Explicit algorithm allow-lists per kind of key (RFC 8725 3.1): a secret only ever
 * verifies HS256, a JWKS only RS256/ES256. So `alg: none` never verifies, and an HS256
 * token "signed" with an RSA public key cannot pass on a JWKS route (HS/RS confusion).
 */
const SECRET_ALGORITHMS = ['HS256']
const JWKS_ALGORITHMS = ['RS256', 'ES256']

/** Seconds of clock difference between the token's issuer and this host that are forgiven for exp/nbf/iat. */
export const CLOCK_TOLERANCE_SECONDS = 30

/** Three base64url parts; longer than 8 KiB is not a token anyone issues. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
const MAX_TOKEN_LENGTH = 8192

export type JwtVerifier = (token: string) => Promise<JWTPayload>

export interface JwksOptions {
  /** After a fetch, unknown `kid`s do not trigger another fetch for this long (stops refetch floods). */
  cooldownMs: number
  /** A key set older than this is fetched again before use. */
  cacheMaxAgeMs: number
  timeoutMs: number
}

/**
 * One remote key set per URL, shared by every route that names it and kept across route
 * reloads, so a configuration change does not throw the fetched keys away. jose's
 * RemoteJWKSet fetches on first use, refetches when a token names an unknown `kid`
 * (key rotation) once the cooldown has passed, and when the cache is older than its max age.
 */
export class JwksRegistry {
  private readonly sets = new Map<string, RemoteJWKSet>()

  constructor (private readonly options: JwksOptions) {}

  get (url: string): RemoteJWKSet {
    let set = this.sets.get(url)
    if (set === undefined) {
      set = createRemoteJWKSet(new URL(url), {
        cooldownDuration: this.options.cooldownMs,
        cacheMaxAge: this.options.cacheMaxAgeMs,
        timeoutDuration: this.options.timeoutMs
      })
      this.sets.set(url, set)
    }
    return set
  }

  /** Drops key sets no route names any more. */
  retain (urls: ReadonlySet<string>): void {
    for (const url of this.sets.keys()) if (!urls.has(url)) this.sets.delete(url)
  }

  get size (): number {
    return this.sets.size
  }
}

/** Compiled once per route: the key, the algorithms and the claim checks are fixed here. */
export function createJwtVerifier (auth: JwtAuth, jwks: JwksRegistry): JwtVerifier {
  const options: JWTVerifyOptions = {
    algorithms: auth.secret !== null ? SECRET_ALGORITHMS : JWKS_ALGORITHMS,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    // A token without an expiry would be valid forever: refused (docs/auth.md).
    requiredClaims: ['exp']
  }
  if (auth.issuer !== undefined) options.issuer = auth.issuer
  if (auth.audience !== undefined) options.audience = auth.audience

  if (auth.secret !== null) {
    const key = new TextEncoder().encode(auth.secret)
    return async (token) => (await jwtVerify(token, key, options)).payload
  }
  const keySet = jwks.get(auth.jwksUrl as string)
  return async (token) => (await jwtVerify(token, keySet, options)).payload
}

export function looksLikeJwt (token: string): boolean {
  return token.length <= MAX_TOKEN_LENGTH && COMPACT_JWS.test(token)
}

/** Errors that say the token is bad, as opposed to the key set being unreachable or broken. */
const TOKEN_ERRORS = new Set([
  'ERR_JWT_EXPIRED', 'ERR_JWT_CLAIM_VALIDATION_FAILED', 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JWS_INVALID', 'ERR_JWT_INVALID', 'ERR_JOSE_ALG_NOT_ALLOWED', 'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS', 'ERR_JOSE_NOT_SUPPORTED'
])

/** A short reason for the audit log (never sent to the client), and whether operators should hear of it. */
export function describeJwtError (err: unknown): { reason: string, tokenFault: boolean } {
  const { code, claim } = err as { code?: string, claim?: string }
  if (code !== undefined && TOKEN_ERRORS.has(code)) {
    return { reason: claim !== undefined ? `${code} (${claim})` : code, tokenFault: true }
  }
  return { reason: code ?? (err instanceof Error ? err.message : String(err)), tokenFault: false }
}
