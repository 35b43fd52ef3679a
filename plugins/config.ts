import { isIP } from 'node:net'
import { parseEnv } from 'node:util'

/**
 * Every setting of the gateway, read once from the environment (README "Configuration").
 * loadConfig is pure: it never touches process.env itself, so tests pass their own.
 */
export interface Config {
  port: number
  host: string
  databaseUrl: string
  /** null: generate one at first start and keep its hash in the database. */
  adminToken: string | null
  redisUrl: string | null
  /** Longest a request waits for one Redis command before failing open (docs/policies.md "Redis outage"). */
  redisTimeoutMs: number
  /** Wrong admin tokens one client IP may send in a minute before it is refused with 429. */
  adminAuthMaxFailures: number
  /** Exact origins answered with CORS headers on the admin API; empty: none. */
  adminCorsOrigins: string[]
  /** Handed to Fastify's `trustProxy`: false, a hop count, or a list of CIDRs/addresses. */
  trustProxy: boolean | number | string[]
  workers: number
  logLevel: string
  bodyLimit: number
  upstreamTimeoutMs: number
  rateLimitMax: number | null
  rateLimitWindowMs: number
  corsOrigins: string[] | null
  auditRetentionDays: number
  headersTimeoutMs: number
  requestTimeoutMs: number
  keepAliveTimeoutMs: number
  /** Client connections one listener holds; beyond it new ones are closed at once. */
  maxConnections: number
  /** A client that takes none of an answer for this long is cut off (docs/upstreams.md "Slow readers"). */
  sendTimeoutMs: number
  shutdownDelayMs: number
  shutdownGraceMs: number
  /** Forward-proxy listener port (docs/egress.md); null: no egress listener. */
  egressPort: number | null
  /** "basic": Proxy-Authorization checked against consumers' basic credentials; "none": open proxy. */
  egressAuth: 'basic' | 'none'
  /** What a destination that no egress rule matches gets. */
  egressDefault: 'allow' | 'deny'
  egressMaxConnections: number
  /** A tunnel with no bytes either way for this long is closed. */
  egressIdleTimeoutMs: number
}

export class ConfigError extends Error {
  constructor (readonly variable: string, problem: string) {
    super(`${variable}: ${problem}`)
    this.name = 'ConfigError'
  }
}

type Env = Record<string, string | undefined>

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export function loadConfig (env: Env): Readonly<Config> {
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim()
    return value === undefined || value === '' ? undefined : value
  }
  const integer = (name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = read(name)
    if (raw === undefined) return fallback
    if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`)
    const value = Number(raw)
    if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${raw}`)
    return value
  }

  const databaseUrl = read('DATABASE_URL') ?? 'sqlite:./data/gatehouse.db'
  if (!/^(sqlite:.+|postgres(ql)?:\/\/.+)$/.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL', `must be sqlite:PATH, sqlite::memory: or postgres://…, got "${databaseUrl}"`)
  }

  const adminToken = read('ADMIN_TOKEN') ?? null
  if (adminToken !== null && adminToken.length < 16) {
    throw new ConfigError('ADMIN_TOKEN', 'must be at least 16 characters')
  }

  const redisUrl = read('REDIS_URL') ?? null
  if (redisUrl !== null && !/^rediss?:\/\/.+/.test(redisUrl)) {
    throw new ConfigError('REDIS_URL', `must be a redis:// or rediss:// URL, got "${redisUrl}"`)
  }

  const logLevel = read('LOG_LEVEL') ?? 'info'
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`)
  }

  const headersTimeoutMs = integer('HEADERS_TIMEOUT_MS', 10_000, 1)
  const requestTimeoutMs = integer('REQUEST_TIMEOUT_MS', 60_000, 1)
  // Node refuses a server whose headers timeout exceeds its request timeout.
  if (headersTimeoutMs > requestTimeoutMs) {
    throw new ConfigError('HEADERS_TIMEOUT_MS', `must not exceed REQUEST_TIMEOUT_MS (${requestTimeoutMs}), got ${headersTimeoutMs}`)
  }

  const egressAuth = read('EGRESS_AUTH') ?? 'basic'
  if (egressAuth !== 'basic' && egressAuth !== 'none') throw new ConfigError('EGRESS_AUTH', `must be basic or none, got "${egressAuth}"`)
  const egressDefault = read('EGRESS_DEFAULT') ?? 'allow'
  if (egressDefault !== 'allow' && egressDefault !== 'deny') throw new ConfigError('EGRESS_DEFAULT', `must be allow or deny, got "${egressDefault}"`)
  const egressCache = read('EGRESS_CACHE') ?? 'false'
  if (egressCache !== 'false') {
    // The response cache (docs/egress.md "Caching") is not part of this build yet.
    throw new ConfigError('EGRESS_CACHE', egressCache === 'true'
      ? 'true is not supported yet: this build has no response cache for egress traffic; unset it or set false'
      : `must be false (true is not supported yet), got "${egressCache}"`)
  }

  return Object.freeze({
    port: integer('PORT', 8080, 0, 65535),
    host: read('HOST') ?? '0.0.0.0',
    databaseUrl,
    adminToken,
    adminAuthMaxFailures: integer('ADMIN_AUTH_MAX_FAILURES', 30, 1, 1_000_000),
    adminCorsOrigins: parseAdminOrigins(read('ADMIN_CORS_ORIGINS')),
    redisUrl,
    redisTimeoutMs: integer('REDIS_TIMEOUT_MS', 100, 1, 60_000),
    trustProxy: parseTrustProxy(read('TRUST_PROXY')),
    workers: integer('WORKERS', 1, 1, 256),
    logLevel,
    bodyLimit: integer('BODY_LIMIT', 10_485_760, 0),
    upstreamTimeoutMs: integer('UPSTREAM_TIMEOUT_MS', 30_000, 1),
    rateLimitMax: read('RATE_LIMIT_MAX') === undefined ? null : integer('RATE_LIMIT_MAX', 0, 1),
    rateLimitWindowMs: integer('RATE_LIMIT_WINDOW_MS', 60_000, 1),
    corsOrigins: parseOrigins(read('CORS_ORIGINS')),
    auditRetentionDays: integer('AUDIT_RETENTION_DAYS', 30, 1),
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: integer('KEEP_ALIVE_TIMEOUT_MS', 72_000, 1),
    maxConnections: integer('MAX_CONNECTIONS', 10_000, 1, 1_000_000),
    // Node's timers take at most 2^31-1 ms.
    sendTimeoutMs: integer('SEND_TIMEOUT_MS', 60_000, 1, 2_147_483_647),
    shutdownDelayMs: integer('SHUTDOWN_DELAY_MS', 0, 0),
    shutdownGraceMs: integer('SHUTDOWN_GRACE_MS', 25_000, 0),
    egressPort: read('EGRESS_PORT') === undefined ? null : integer('EGRESS_PORT', 0, 0, 65535),
    egressAuth,
    egressDefault,
    egressMaxConnections: integer('EGRESS_MAX_CONNECTIONS', 10_000, 1, 1_000_000),
    egressIdleTimeoutMs: integer('EGRESS_IDLE_TIMEOUT_MS', 300_000, 1, 2_147_483_647)
  })
}

/**
 * The variables of a `.env` file that the real environment leaves unset (the environment wins,
 * as with dotenv and docker). Returns only those, so the caller decides where they go.
 */
export function envFileAdditions (fileText: string, env: Env): Record<string, string> {
  const additions: Record<string, string> = {}
  for (const [name, value] of Object.entries(parseEnv(fileText))) {
    if (env[name] === undefined && value !== undefined) additions[name] = value
  }
  return additions
}

function parseTrustProxy (raw: string | undefined): Config['trustProxy'] {
  if (raw === undefined || raw === 'false') return false
  if (/^\d+$/.test(raw)) return Number(raw)
  const entries = raw.split(',').map((entry) => entry.trim()).filter(Boolean)
  for (const entry of entries) {
    const [address, bits, extra] = entry.split('/')
    const family = isIP(address)
    const maxBits = family === 4 ? 32 : 128
    const validBits = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= maxBits)
    if (family === 0 || !validBits || extra !== undefined) {
      throw new ConfigError('TRUST_PROXY', `must be false, a hop count, or a comma list of IPs/CIDRs; "${entry}" is none of these`)
    }
  }
  return entries
}

function parseOrigins (raw: string | undefined): string[] | null {
  if (raw === undefined) return null
  const origins = raw.split(',').map((origin) => origin.trim()).filter(Boolean)
  for (const origin of origins) {
    if (origin !== '*' && !/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError('CORS_ORIGINS', `"${origin}" is not "*" or an origin like https://app.example.com`)
    }
  }
  return origins
}

/** Exact origins only: no "*" and no patterns, since the admin API carries the admin token. */
function parseAdminOrigins (raw: string | undefined): string[] {
  if (raw === undefined) return []
  const origins = raw.split(',').map((origin) => origin.trim()).filter(Boolean)
  for (const origin of origins) {
    if (!/^https?:\/\/[^/\s*]+$/.test(origin)) {
      throw new ConfigError('ADMIN_CORS_ORIGINS', `"${origin}" is not an exact origin like https://dashboard.example.com (no "*", no path)`)
    }
  }
  return origins
}
