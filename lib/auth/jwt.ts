import { createRemoteJWKSet, customFetch, jwtVerify, type JWTPayload, type JWTVerifyOptions, type RemoteJWKSet } from 'jose'
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

export interface JwtVerifier {
  /** The payload of a token verified shortly before and not expired since; synchronous. */
  cached: (token: string) => JWTPayload | undefined
  verify: (token: string) => Promise<JWTPayload>
}

export interface TokenCacheOptions {
  ttlMs: number
  maxEntries: number
}

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
/** A remote key set and how many times it has been fetched (verified tokens are tied to one fetch). */
export interface KeySet {
  readonly resolve: RemoteJWKSet
  readonly fetches: number
}

export class JwksRegistry {
  private readonly sets = new Map<string, KeySet>()

  constructor (private readonly options: JwksOptions) {}

  get (url: string): KeySet {
    let set = this.sets.get(url)
    if (set === undefined) {
      const counted = { resolve: null as unknown as RemoteJWKSet, fetches: 0 }
      counted.resolve = createRemoteJWKSet(new URL(url), {
        cooldownDuration: this.options.cooldownMs,
        cacheMaxAge: this.options.cacheMaxAgeMs,
        timeoutDuration: this.options.timeoutMs,
        [customFetch]: async (resource, init) => {
          counted.fetches++
          return await fetch(resource, init)
        }
      })
      set = counted
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

/**
 * Compiled once per route: the key, the algorithms and the claim checks are fixed here.
 *
 * Verified tokens are remembered for `ttlMs` (never past their own exp): clients send the
 * same token on request after request, and jose's verification (WebCrypto, async) costs
 * tens of µs each time. The cache lives and dies with the compiled route, so a changed
 * secret, issuer or audience starts from nothing, and on JWKS routes every fetch of the key
 * set empties it, so a withdrawn key stops verifying as soon as the gateway sees the new set.
 */
export function createJwtVerifier (auth: JwtAuth, jwks: JwksRegistry, cacheOptions: TokenCacheOptions): JwtVerifier {
  const options: JWTVerifyOptions = {
    algorithms: auth.secret !== null ? SECRET_ALGORITHMS : JWKS_ALGORITHMS,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    // A token without an expiry would be valid forever: refused (docs/auth.md).
    requiredClaims: ['exp']
  }
  if (auth.issuer !== undefined) options.issuer = auth.issuer
  if (auth.audience !== undefined) options.audience = auth.audience

  let verifyToken: (token: string) => Promise<{ payload: JWTPayload }>
  // Remembered tokens of a JWKS route hold only while the key set is the one they were verified
  // against: after a refetch (rotation), a key the issuer withdrew stops verifying at once.
  let keySetVersion: () => number
  if (auth.secret !== null) {
    const secret = new TextEncoder().encode(auth.secret)
    verifyToken = async (token) => await jwtVerify(token, secret, options)
    keySetVersion = () => 0
  } else {
    const keySet = jwks.get(auth.jwksUrl as string)
    verifyToken = async (token) => await jwtVerify(token, keySet.resolve, options)
    keySetVersion = () => keySet.fetches
  }
  const cache = new Map<string, { payload: JWTPayload, until: number, keySetVersion: number }>()

  return {
    cached (token) {
      const entry = cache.get(token)
      if (entry === undefined) return undefined
      if (entry.until > Date.now() && entry.keySetVersion === keySetVersion()) return entry.payload
      cache.delete(token)
      return undefined
    },
    async verify (token) {
      const version = keySetVersion()
      const { payload } = await verifyToken(token)
      if (cacheOptions.ttlMs > 0) {
        if (cache.size >= cacheOptions.maxEntries) {
          const oldest = cache.keys().next().value
          if (oldest !== undefined) cache.delete(oldest)
        }
        // exp is required, so always a number here.
        const until = Math.min(Date.now() + cacheOptions.ttlMs, (payload.exp as number) * 1000)
        // A fetch during verification (version moved) leaves the token unremembered.
        if (version === keySetVersion()) cache.set(token, { payload, until, keySetVersion: version })
      }
      return payload
    }
  }
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
