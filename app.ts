import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './plugins/config.js'
import accessLog from './plugins/access-log.js'
import adminAuth from './plugins/admin-auth.js'
import audit, { type AuditOptions } from './plugins/audit.js'
import configChanges from './plugins/config-changes.js'
import configSections from './plugins/config-sections.js'
import connectionCap from './plugins/connection-cap.js'
import db from './plugins/db.js'
import egress, { type EgressOptions } from './plugins/egress.js'
import errorHandler from './plugins/error-handler.js'
import filters from './plugins/filters.js'
import health from './plugins/health.js'
import metrics from './plugins/metrics.js'
import proxy from './plugins/proxy.js'
import redis from './plugins/redis.js'
import routeTable from './plugins/route-table.js'
import swagger from './plugins/swagger.js'
import upstreams, { type UpstreamsOptions } from './plugins/upstreams.js'
import auth, { type AuthOptions } from './policies/auth/plugin.js'
import bodyLimit from './policies/body-limit/plugin.js'
import cors from './policies/cors/plugin.js'
import rateLimit from './policies/rate-limit/plugin.js'
import admin from './routes/admin/index.js'
import metricsRoute from './routes/metrics.js'
import { version } from './lib/version.js'
import { frameworkError } from './lib/gateway-reply.js'
import { clientErrorHandler } from './lib/client-errors.js'
import { deferContinue } from './lib/expect-continue.js'
import { lazyChildLogger } from './lib/lazy-logger.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Readonly<Config>
  }
}

export interface BuildOptions {
  /** Run database migrations (the cluster primary does it once before forking; tests do it per app). */
  migrate?: boolean
  logger?: FastifyServerOptions['logger']
  /** How often to look for changes made by other instances. */
  configPollIntervalMs?: number
  /** Where the last configuration is saved (PostgreSQL); default from DATABASE_URL, null for none (tests). */
  configSnapshotFile?: string | null
  /** Prefix of every Redis key and channel (default "gatehouse:"); tests use one per test. */
  redisKeyPrefix?: string
  /** Connect timeout, pool size, passive health (ejection) settings; defaults when omitted. */
  upstreams?: UpstreamsOptions
  /** Route auth tuning (JWKS cooldown, basic-auth cache); tests shorten them. */
  auth?: AuthOptions
  /**
   * false: proxied requests are not written to the audit log (admin changes still are). Only for
   * the bench's audit-off profile, which measures what auditing costs; not a setting for users.
   */
  auditRequests?: boolean
  /** Audit queue tuning (batch size, queue bound, retention cadence); tests shrink them. */
  audit?: Omit<AuditOptions, 'recordRequests'>
  /** Forward-proxy tuning (connect and DNS timeouts, pool size); tests shorten them. */
  egress?: EgressOptions
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** A client's X-Request-Id is kept when it is 1–128 of [A-Za-z0-9._:-]; otherwise a new one. */
function requestId (request: IncomingMessage): string {
  const id = request.headers['x-request-id']
  return typeof id === 'string' && REQUEST_ID.test(id) ? id : randomUUID()
}

/** A hop count trusts that many proxies nearest to us (proxy-addr counts hops from 0). */
function trustProxyOption (trust: Config['trustProxy']): boolean | string[] | ((address: string, hop: number) => boolean) {
  return typeof trust === 'number' ? (_address, hop) => hop < trust : trust
}

/** Builds the whole gateway without listening, so tests can build many. */
export async function buildApp (config: Readonly<Config>, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify<Server, IncomingMessage, ServerResponse>({
    logger: options.logger ?? { level: config.logLevel },
    trustProxy: trustProxyOption(config.trustProxy),
    genReqId: requestId,
    childLoggerFactory: lazyChildLogger,
    // plugins/access-log.ts writes one line per request instead of Fastify's two
    // (the top-level disableRequestLogging option is deprecated in Fastify 5.x).
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: false,
    bodyLimit: config.bodyLimit,
    // Client-side limits (docs/routing.md "Refused before routing"): Fastify leaves them off.
    serverFactory: (handler) => createServer({
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      keepAliveTimeout: config.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs),
      maxHeaderSize: 16 * 1024
    }, handler)
      // No "100 Continue" before a 413: sent once the body is wanted (lib/expect-continue.ts).
      .on('checkContinue', deferContinue(handler)),
    // What Node's parser rejects (408/431/400) is answered as JSON with a request id too.
    clientErrorHandler,
    // Router errors (a path it cannot percent-decode) as JSON with a request id too.
    frameworkErrors: (error, request, reply) => {
      frameworkError(error, request, reply)
      request.server.accessLog.routerRefused(request, reply, error.message)
    },
    // Unknown fields are refused, not silently dropped; defaults inside unions are filled by
    // schemas/defaults.ts because Ajv ignores them there (hence strict: false).
    ajv: { customOptions: { removeAdditional: false, strict: false } },
    // While closing, a request that still arrives on a kept-alive connection is served (with
    // Connection: close) rather than refused: the drain must not lose requests (lib/shutdown.ts).
    return503OnClosing: false
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.decorate('config', config)
  app.decorateRequest('gateway', null)

  // Order matters: state first (db → change watcher → compiled tables), then the docs
  // (swagger collects routes through onRoute, so it precedes them), then the endpoints.
  await app.register(errorHandler)
  await app.register(db, { databaseUrl: config.databaseUrl, migrate: options.migrate ?? true })
  // Right after db: every later plugin may add its own metrics to app.metrics.registry.
  await app.register(metrics)
  // MAX_CONNECTIONS on the listener, refusals counted in /metrics.
  await app.register(connectionCap)
  await app.register(configChanges, { pollIntervalMs: options.configPollIntervalMs, snapshotFile: options.configSnapshotFile })
  await app.register(configSections)
  await app.register(routeTable)
  // Traffic policy: filters for every request; each policy in policies/ adds its stage to the
  // pipeline of the routes that use it (lib/pipeline.ts orders them, whatever the order here).
  // Redis first: it carries the rate-limit counters and the config-change broadcast.
  await app.register(redis, { keyPrefix: options.redisKeyPrefix })
  await app.register(filters)
  await app.register(cors)
  await app.register(rateLimit)
  await app.register(bodyLimit)
  await app.register(upstreams, options.upstreams ?? {})
  await app.register(audit, { ...options.audit, recordRequests: options.auditRequests ?? true })
  // Root hooks at the end of every request: access log, request metrics, audit rows. Before
  // any route, so every route (and the 404 handler) gets them.
  await app.register(accessLog)
  // Route auth: its stage compiled on every route-table swap, credentials on every config change.
  await app.register(auth, options.auth ?? {})
  // The forward proxy (EGRESS_PORT): its own listener, opened by server.ts; rules, auth, audit.
  await app.register(egress, options.egress ?? {})
  await app.register(adminAuth)
  await app.register(swagger, { version })

  // Reserved endpoints (README "Reserved endpoints").
  await app.register(health)
  await app.register(metricsRoute)
  await app.register(admin, { prefix: '/admin' })

  // Everything else is proxied traffic.
  await app.register(proxy)
  return app
}
