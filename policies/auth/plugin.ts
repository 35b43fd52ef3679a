import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { type BasicCredentials, BasicVerifier, type VerifyResult } from '../../lib/auth/basic.js'
import { consumersConfigSection } from '../../lib/auth/config-section.js'
import { CredentialStore } from '../../lib/auth/credential-store.js'
import { JwksRegistry } from '../../lib/auth/jwt.js'
import type { PolicyDependencies } from '../../lib/auth/policy.js'
import { loadCredentials, type StoredCredentials } from '../../repositories/consumers.js'
import { compileAuthStage } from './stage.js'

/**
 * Route auth (docs/auth.md "Route auth"): the stage a route with `auth` runs between CORS and the
 * rate limit. Each route's policy is compiled when the route table swaps; the
 * credential store (every consumer, key hash and basic credential) is compiled whenever
 * the configuration version moves — at once on this instance, within the poll interval on
 * the others — so the request path only reads maps and never awaits the database.
 */
export interface Auth {
  readonly store: CredentialStore
  /** Verified basic credentials currently remembered (for tests and diagnostics). */
  readonly basicCacheSize: number
  /** Consumers' basic credentials through the same cache and scrypt cap as routes (the egress proxy uses it). */
  verifyBasic: (credentials: BasicCredentials) => VerifyResult
}

declare module 'fastify' {
  interface FastifyInstance {
    auth: Auth
  }
}

export interface AuthOptions {
  /** JWKS: no refetch for an unknown kid sooner than this after the last fetch. */
  jwksCooldownMs?: number
  jwksCacheMaxAgeMs?: number
  jwksTimeoutMs?: number
  /** How long a verified JWT skips verification (never past its exp); 0 turns the cache off. */
  jwtCacheTtlMs?: number
  /** How long a verified basic username/password pair skips scrypt. */
  basicCacheTtlMs?: number
  /** scrypt runs at once / allowed to wait before answering 503. */
  scryptConcurrency?: number
  scryptMaxQueued?: number
}

function wholeNumber (name: keyof AuthOptions, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 0) throw new Error(`auth option ${name} must be a whole number ≥ 0, got ${value}`)
  return value
}

const authPlugin: FastifyPluginAsync<AuthOptions> = async (app, options) => {
  let store = CredentialStore.empty()
  const getStore = (): CredentialStore => store
  const basic = new BasicVerifier({
    cacheTtlMs: wholeNumber('basicCacheTtlMs', options.basicCacheTtlMs, 30_000),
    cacheMaxEntries: 10_000,
    concurrency: Math.max(1, wholeNumber('scryptConcurrency', options.scryptConcurrency, 2)),
    maxQueued: wholeNumber('scryptMaxQueued', options.scryptMaxQueued, 32)
  }, getStore)
  const jwks = new JwksRegistry({
    cooldownMs: wholeNumber('jwksCooldownMs', options.jwksCooldownMs, 10_000),
    cacheMaxAgeMs: wholeNumber('jwksCacheMaxAgeMs', options.jwksCacheMaxAgeMs, 600_000),
    timeoutMs: wholeNumber('jwksTimeoutMs', options.jwksTimeoutMs, 5_000)
  })
  const jwtCache = { ttlMs: wholeNumber('jwtCacheTtlMs', options.jwtCacheTtlMs, 30_000), maxEntries: 10_000 }
  const dependencies: PolicyDependencies = { store: getStore, basic, jwks, jwtCache, log: app.log }

  app.routeTable.addStage('auth', (route) => compileAuthStage(route, dependencies))
  // JWKS of routes that are gone are dropped (the live table's stay cached).
  app.routeTable.onSwap((routes) => {
    const jwksUrls = new Set<string>()
    for (const route of routes) {
      if (route.auth.type === 'jwt' && route.auth.jwksUrl !== null) jwksUrls.add(route.auth.jwksUrl)
    }
    jwks.retain(jwksUrls)
  })

  const install = (stored: StoredCredentials): void => {
    store = CredentialStore.build(stored)
    basic.reset()
  }
  await app.configChanges.track('consumers', async () => {
    const stored = await app.db.transaction().execute((trx) => loadCredentials(trx))
    install(stored)
    return stored
  }, install)

  app.configSections.add(consumersConfigSection)

  app.decorate('auth', {
    get store () { return store },
    get basicCacheSize () { return basic.cacheSize },
    verifyBasic: (credentials) => basic.verify(credentials)
  } satisfies Auth)
}

export default fp(authPlugin, { name: 'auth', dependencies: ['db', 'config-changes', 'config-sections', 'route-table'] })
