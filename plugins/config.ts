import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { parseEnv } from 'node:util'
import { parseSinkUrl } from '../lib/log-sinks/sink-url.js'
import { CertificateProblem, checkCertificatePair } from '../lib/certificate-pem.js'

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
  /** The access log's file (docs/logging.md "Access-log file"); null: stdout only. */
  accessLogFile: string | null
  /** Rotate the file at this size; 0: never (an external logrotate with SIGHUP). */
  accessLogRotateBytes: number
  /** Rotated files kept. */
  accessLogKeep: number
  /** LOG_SINKS entries as given (validated by lib/log-sinks/sink-url.ts). */
  logSinks: string[]
  /** Lines each sink's queue holds at most. */
  logSinkQueue: number
  /** OTLP/HTTP base URL spans are exported to; null: trace context is propagated, nothing exported. */
  otlpEndpoint: string | null
  /** Probability a new trace (no valid client traceparent) is sampled. */
  tracesSamplerRatio: number
  /** OTEL_SERVICE_NAME: the exported spans' service.name. */
  otelServiceName: string
  /** Server-Timing on every proxied answer (docs/transforms.md "Server-Timing"). */
  serverTiming: boolean
  /** Bound of the response cache's memory store, per process (docs/cache.md). */
  cacheMemoryBytes: number
  /** SECRET_KEY: encrypts secrets kept at rest (lib/secret-box.ts); null: kept as the database keeps them. */
  secretKey: string | null
  /** CONFIG_REVISIONS_KEEP: how many configuration revisions are kept (docs/config-history.md). */
  configRevisionsKeep: number
  /** CONFIG_FILE: a YAML or JSON configuration document applied at start, on SIGHUP and on POST /admin/reload. */
  configFile: string | null
  /** HTTPS listener port (docs/tls.md); null: no HTTPS listener. */
  tlsPort: number | null
  /** The default certificate (TLS_CERT_FILE / TLS_KEY_FILE), read and checked at start; null without TLS_PORT. */
  tlsDefault: { cert: string, key: string } | null
  /** Forward-proxy listener port (docs/egress.md); null: no egress listener. */
  egressPort: number | null
  /** "basic": Proxy-Authorization checked against consumers' basic credentials; "none": open proxy. */
  egressAuth: 'basic' | 'none'
  /** What a destination that no egress rule matches gets. */
  egressDefault: 'allow' | 'deny'
  egressMaxConnections: number
  /** A tunnel with no bytes either way for this long is closed. */
  egressIdleTimeoutMs: number
  /** EGRESS_CACHE: plain-HTTP GET/HEAD answers through the forward proxy kept in the response cache's memory store. */
  egressCache: boolean
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

  const boolean = (name: string, fallback: boolean): boolean => {
    const raw = read(name)
    if (raw === undefined) return fallback
    if (raw === 'true' || raw === 'false') return raw === 'true'
    throw new ConfigError(name, `must be true or false, got "${raw}"`)
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

  const logSinks = (read('LOG_SINKS') ?? '').split(',').map((entry) => entry.trim()).filter(Boolean)
  for (const sink of logSinks) {
    try {
      parseSinkUrl(sink)
    } catch (err) {
      throw new ConfigError('LOG_SINKS', (err as Error).message)
    }
  }
  if (logSinks.some((sink) => sink.startsWith('s3:')) && read('ACCESS_LOG_FILE') === undefined) {
    throw new ConfigError('LOG_SINKS', 'an s3:// sink uploads the rotated access-log files: ACCESS_LOG_FILE must be set')
  }

  const otlpEndpoint = read('OTEL_EXPORTER_OTLP_ENDPOINT') ?? null
  if (otlpEndpoint !== null && !/^https?:\/\/[^\s/]+(\/\S*)?$/.test(otlpEndpoint)) {
    throw new ConfigError('OTEL_EXPORTER_OTLP_ENDPOINT', `must be an http:// or https:// URL, got "${otlpEndpoint}"`)
  }
  const samplerArg = read('OTEL_TRACES_SAMPLER_ARG') ?? '1.0'
  const tracesSamplerRatio = Number(samplerArg)
  if (!/^\d+(\.\d+)?$/.test(samplerArg) || tracesSamplerRatio > 1) {
    throw new ConfigError('OTEL_TRACES_SAMPLER_ARG', `must be a ratio between 0 and 1, got "${samplerArg}"`)
  }

  const secretKey = read('SECRET_KEY') ?? null
  if (secretKey !== null && secretKey.length < 16) {
    throw new ConfigError('SECRET_KEY', 'must be at least 16 characters')
  }

  const configFile = read('CONFIG_FILE') ?? null
  if (configFile !== null && !/\.(ya?ml|json)$/i.test(configFile)) {
    throw new ConfigError('CONFIG_FILE', `must name a .yaml, .yml or .json file, got "${configFile}"`)
  }
  const tlsPort = read('TLS_PORT') === undefined ? null : integer('TLS_PORT', 0, 0, 65535)

  const egressAuth = read('EGRESS_AUTH') ?? 'basic'
  if (egressAuth !== 'basic' && egressAuth !== 'none') throw new ConfigError('EGRESS_AUTH', `must be basic or none, got "${egressAuth}"`)
  const egressDefault = read('EGRESS_DEFAULT') ?? 'allow'
  if (egressDefault !== 'allow' && egressDefault !== 'deny') throw new ConfigError('EGRESS_DEFAULT', `must be allow or deny, got "${egressDefault}"`)
  const egressCache = read('EGRESS_CACHE') ?? 'false'
  if (egressCache !== 'true' && egressCache !== 'false') throw new ConfigError('EGRESS_CACHE', `must be true or false, got "${egressCache}"`)

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
    serverTiming: boolean('SERVER_TIMING', true),
    cacheMemoryBytes: integer('CACHE_MEMORY_BYTES', 67_108_864, 0),
    accessLogFile: read('ACCESS_LOG_FILE') ?? null,
    accessLogRotateBytes: integer('ACCESS_LOG_ROTATE_BYTES', 104_857_600, 0),
    accessLogKeep: integer('ACCESS_LOG_KEEP', 10, 1, 1000),
    logSinks,
    logSinkQueue: integer('LOG_SINK_QUEUE', 10_000, 1, 10_000_000),
    otlpEndpoint,
    tracesSamplerRatio,
    otelServiceName: read('OTEL_SERVICE_NAME') ?? 'gatehouse',
    secretKey,
    configRevisionsKeep: integer('CONFIG_REVISIONS_KEEP', 1000, 1, 1_000_000),
    configFile,
    tlsPort,
    tlsDefault: tlsPort === null ? null : readDefaultCertificate(read('TLS_CERT_FILE'), read('TLS_KEY_FILE')),
    egressPort: read('EGRESS_PORT') === undefined ? null : integer('EGRESS_PORT', 0, 0, 65535),
    egressAuth,
    egressDefault,
    egressMaxConnections: integer('EGRESS_MAX_CONNECTIONS', 10_000, 1, 1_000_000),
    egressIdleTimeoutMs: integer('EGRESS_IDLE_TIMEOUT_MS', 300_000, 1, 2_147_483_647),
    egressCache: egressCache === 'true'
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

/** TLS_CERT_FILE and TLS_KEY_FILE: both required with TLS_PORT, readable, PEM, and matching. */
function readDefaultCertificate (certFile: string | undefined, keyFile: string | undefined): { cert: string, key: string } {
  if (certFile === undefined) throw new ConfigError('TLS_CERT_FILE', 'is required when TLS_PORT is set (PEM certificate file)')
  if (keyFile === undefined) throw new ConfigError('TLS_KEY_FILE', 'is required when TLS_PORT is set (PEM private key file)')
  const readPem = (variable: string, file: string): string => {
    try {
      return readFileSync(file, 'utf8')
    } catch (err) {
      throw new ConfigError(variable, `cannot read "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  const cert = readPem('TLS_CERT_FILE', certFile)
  const key = readPem('TLS_KEY_FILE', keyFile)
  try {
    checkCertificatePair(cert, key)
  } catch (err) {
    if (!(err instanceof CertificateProblem)) throw err
    const variable = err.field === 'cert' ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE'
    throw new ConfigError(variable, `"${err.field === 'cert' ? certFile : keyFile}" ${err.message.slice(err.field.length + 2)}`)
  }
  return { cert, key }
}
