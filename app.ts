import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './plugins/config.js'
import accessLog from './plugins/access-log.js'
import adminAuth from './plugins/admin-auth.js'
import audit, { type AuditOptions } from './plugins/audit.js'
import certificates from './plugins/certificates.js'
import configChanges from './plugins/config-changes.js'
import configFile, { type ConfigFileOptions } from './plugins/config-file.js'
import configHistory from './plugins/config-history.js'
import configSections from './plugins/config-sections.js'
import dashboard from './plugins/dashboard.js'
import connectionCap from './plugins/connection-cap.js'
import db from './plugins/db.js'
import egress, { type EgressOptions } from './plugins/egress.js'
import errorHandler from './plugins/error-handler.js'
import filters from './plugins/filters.js'
import health from './plugins/health.js'
import logShipping, { type LogShippingOptions } from './plugins/log-shipping.js'
import instances, { type InstancesOptions } from './plugins/instances.js'
import metrics from './plugins/metrics.js'
import proxy from './plugins/proxy.js'
import redis from './plugins/redis.js'
import routeTable from './plugins/route-table.js'
import swagger from './plugins/swagger.js'
import tracing, { type TracingOptions } from './plugins/tracing.js'
import tlsListener from './plugins/tls-listener.js'
import upstreams, { type UpstreamsOptions } from './plugins/upstreams.js'
import websocket from './plugins/websocket.js'
import auth, { type AuthOptions } from './policies/auth/plugin.js'
import bodyLimit from './policies/body-limit/plugin.js'
import compression from './policies/compression/plugin.js'
import cache from './policies/cache/plugin.js'
import cors from './policies/cors/plugin.js'
import httpsRedirect from './policies/https-redirect/plugin.js'
import rateLimit from './policies/rate-limit/plugin.js'
import transforms from './policies/transforms/plugin.js'
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
    /** Fastify's request handler: other listeners of the process (HTTPS) serve the same app through it. */
    httpHandler: (req: IncomingMessage, res: ServerResponse) => void
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
  /** CONFIG_FILE handling (the cluster primary applies it once for the host). */
  configFile?: ConfigFileOptions
  /** Audit queue tuning (batch size, queue bound, retention cadence); tests shrink them. */
  audit?: Omit<AuditOptions, 'recordRequests'>
  /** Log sink batch timing (wait, retry window); tests shorten them. */
  logShipping?: LogShippingOptions
  /** Span export timing; tests shorten it. */
  tracing?: TracingOptions
  /** Heartbeat period of GET /admin/instances; tests shorten it. */
  instances?: InstancesOptions
  /** Forward-proxy tuning (connect and DNS timeouts, pool size); tests shorten them. */
  egress?: EgressOptions
}

/** Request headers over this are answered 431 (docs/routing.md "Refused before routing"). */
export const MAX_HEADER_BYTES = 16 * 1024

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
  let httpHandler: ((req: IncomingMessage, res: ServerResponse) => void) | null = null
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
    serverFactory: (handler) => {
      httpHandler = handler
      return createServer({
        headersTimeout: config.headersTimeoutMs,
        requestTimeout: config.requestTimeoutMs,
        keepAliveTimeout: config.keepAliveTimeoutMs,
        connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs),
        maxHeaderSize: MAX_HEADER_BYTES
      }, handler)
        // No "100 Continue" before a 413: sent once the body is wanted (lib/expect-continue.ts).
        .on('checkContinue', deferContinue(handler))
    },
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
  app.decorate('httpHandler', httpHandler as unknown as NonNullable<typeof httpHandler>)
  app.decorateRequest('gateway', null)

  // Order matters: state first (db → change watcher → compiled tables), then the docs
  // (swagger collects routes through onRoute, so it precedes them), then the endpoints.
  await app.register(errorHandler)
  await app.register(db, { databaseUrl: config.databaseUrl, migrate: options.migrate ?? true })
  // Right after db: every later plugin may add its own metrics to app.metrics.registry.
  await app.register(metrics)
  // ACCESS_LOG_FILE, LOG_SINKS, trace context and span export (docs/logging.md). Early, so their
  // onClose hooks run after audit's and access-log's: the last lines are queued when they drain.
  await app.register(logShipping, options.logShipping ?? {})
  await app.register(tracing, options.tracing ?? {})
  // MAX_CONNECTIONS on the listener, refusals counted in /metrics.
  await app.register(connectionCap)
  await app.register(configChanges, { pollIntervalMs: options.configPollIntervalMs, snapshotFile: options.configSnapshotFile })
  await app.register(configSections)
  // Every configuration change is a revision (docs/config-history.md), over the sections registered below.
  await app.register(configHistory)
  await app.register(routeTable)
  // This process's identity, heartbeat row and traffic buckets (GET /admin/instances, the dashboard).
  await app.register(instances, options.instances ?? {})
  // Traffic policy: filters for every request; each policy in policies/ adds its stage to the
  // pipeline of the routes that use it (lib/pipeline.ts orders them, whatever the order here).
  // Redis first: it carries the rate-limit counters and the config-change broadcast.
  await app.register(redis, { keyPrefix: options.redisKeyPrefix })
  await app.register(filters)
  await app.register(httpsRedirect)
  await app.register(cors)
  await app.register(rateLimit)
  await app.register(bodyLimit)
  await app.register(transforms)
  await app.register(compression)
  await app.register(upstreams, options.upstreams ?? {})
  // Response cache: its stage, memory and Redis stores, purges from other instances.
  await app.register(cache)
  await app.register(audit, { ...options.audit, recordRequests: options.auditRequests ?? true })
  // Root hooks at the end of every request: access log, request metrics, audit rows. Before
  // any route, so every route (and the 404 handler) gets them.
  await app.register(accessLog)
  // WebSocket upgrades on every listener, run through this same app (docs/websocket.md).
  await app.register(websocket)
  // Route auth: its stage compiled on every route-table swap, credentials on every config change.
  await app.register(auth, options.auth ?? {})
  // The forward proxy (EGRESS_PORT): its own listener, opened by server.ts; rules, auth, audit.
  await app.register(egress, options.egress ?? {})
  await app.register(adminAuth)
  // HTTPS certificates: the SNI table, reloaded on every config change (docs/tls.md).
  await app.register(certificates)
  await app.register(swagger, { version })

  // CONFIG_FILE: after every plugin that adds a section of the configuration document.
  await app.register(configFile, options.configFile ?? {})

  // Reserved endpoints (README "Reserved endpoints").
  await app.register(health)
  await app.register(metricsRoute)
  await app.register(admin, { prefix: '/admin' })
  // The web UI over the admin API (docs/dashboard.md).
  await app.register(dashboard)

  // Everything else is proxied traffic.
  await app.register(proxy)
  // The HTTPS listener serves this same app (docs/tls.md); it listens when server.ts says so.
  await app.register(tlsListener)
  return app
}
