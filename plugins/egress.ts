import { randomUUID } from 'node:crypto'
import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Counter } from 'prom-client'
import { Agent } from 'undici'
import { atMostEvery } from '../lib/at-most-every.js'
import { parseBasicAuthorization } from '../lib/auth/basic.js'
import { BusyError } from '../lib/auth/password.js'
import type { ConsumerIdentity, Outcome } from '../lib/gateway-context.js'
import { auditRow, roundMs } from '../lib/request-record.js'
import { unmapIPv4 } from '../lib/ip.js'
import { addUpstreamResponseHeaders } from '../lib/proxy-headers.js'
import { countRawHeader } from '../lib/request-headers.js'
import { type CacheEntry, NOT_MODIFIED_HEADERS, notModified } from '../lib/cache/entry.js'
import { EgressCache, type EgressLookup } from '../lib/egress/cache.js'
import { type Destination, parseAbsoluteTarget, parseConnectTarget } from '../lib/egress/destination.js'
import { type AnswerTap, forwardHttp } from '../lib/egress/forward-http.js'
import { createEgressListener, type EgressListener } from '../lib/egress/listener.js'
import { resolveAll } from '../lib/egress/resolve.js'
import { buildEgressRule, EgressRuleSet, egressRuleProblem, egressRuleWithDefaults } from '../lib/egress/rules.js'
import { ConnectError, connectToAny, joinTunnel } from '../lib/egress/tunnel.js'
import { deleteAllEgressRules, insertEgressRules, listAllEgressRules } from '../repositories/egress-rules.js'
import { type EgressRule, type EgressRuleConfigItem, EgressRuleConfigItemSchema } from '../schemas/egress-rule.js'

/**
 * The forward proxy (docs/egress.md): EGRESS_PORT opens a second listener in this process
 * where clients send absolute-form HTTP requests and CONNECT tunnels. Each request or tunnel
 * goes: Proxy-Authorization (EGRESS_AUTH=basic: consumers' basic credentials through route
 * auth's cache and scrypt cap) → the consumer's rateLimit (one hit) → egress rules on the name
 * → resolve → egress rules and the private-address check on every address → connect only to a
 * checked address. With EGRESS_CACHE=true an admitted plain-HTTP GET/HEAD may then be answered
 * from the response cache's memory store (lib/egress/cache.ts, docs/egress.md "Caching").
 * Every request and tunnel is one audit row with eventType "egress".
 * The rules live in the egress_rules table and reach every instance like the filters do.
 */
export interface EgressStats {
  activeTunnels: number
  activeRequests: number
  /** Bytes from clients: request bodies and tunnel traffic towards destinations. */
  bytesIn: number
  /** Bytes to clients: answers (headers included) and tunnel traffic from destinations. */
  bytesOut: number
  /** Requests and tunnels admitted to a destination. */
  allowed: number
  /** Requests and tunnels refused by a rule, the private-address check or the CONNECT port rule. */
  blocked: number
}

export interface Egress {
  /** Opens the listener (server.ts with EGRESS_PORT; tests on port 0). */
  listen: (port: number, host: string) => Promise<void>
  /** The port listened on; null before listen. */
  readonly port: number | null
  readonly stats: Readonly<EgressStats>
  /** Every stored rule, expired or not, in creation order. */
  readonly rules: readonly EgressRule[]
}

declare module 'fastify' {
  interface FastifyInstance {
    egress: Egress
  }
}

export interface EgressOptions {
  /** Time to open a TCP connection to a destination (tunnels and plain HTTP). */
  connectTimeoutMs?: number
  /** Time a DNS lookup may take. */
  dnsTimeoutMs?: number
  /** Pooled upstream connections per destination address and port. */
  connectionsPerOrigin?: number
}

const REALM_CHALLENGE = { 'proxy-authenticate': 'Basic realm="gatehouse"' }

/** What admission decided against: status, message, audit outcome, and the reason label in /metrics. */
interface Refusal {
  status: number
  message: string
  outcome: Outcome
  reason: string
  headers?: Record<string, string>
  consumer?: ConsumerIdentity | null
}

interface Admitted {
  consumer: ConsumerIdentity | null
  addresses: string[]
}

/** One request or tunnel as audited. */
interface Exchange {
  requestId: string
  startedAt: number
  clientIp: string
  method: string
  path: string
  userAgent: string | null
  consumer: ConsumerIdentity | null
}

const egressPlugin: FastifyPluginAsync<EgressOptions> = async (app, options) => {
  const config = app.config
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000
  const dnsTimeoutMs = options.dnsTimeoutMs ?? 5_000
  let rules: readonly EgressRule[] = []
  let ruleSet = new EgressRuleSet([], config.egressDefault)
  const stats: EgressStats = { activeTunnels: 0, activeRequests: 0, bytesIn: 0, bytesOut: 0, allowed: 0, blocked: 0 }
  /** Cuts each open tunnel (shutdown); the Set entry is the tunnel's only trace outside its sockets. */
  const tunnels = new Set<() => void>()
  const agent = new Agent({ connections: options.connectionsPerOrigin ?? 64, connectTimeout: connectTimeoutMs, keepAliveTimeout: 4_000 })
  const mayWarn = atMostEvery(10_000)
  // EGRESS_CACHE=true: the response cache's memory store, shared with routes (one CACHE_MEMORY_BYTES bound).
  const cache = config.egressCache ? new EgressCache(app.cache.memory) : null

  const exchanges = new Counter({
    name: 'gatehouse_egress_requests_total',
    help: 'Forward-proxy requests (kind "http") and tunnels (kind "connect") by how they ended',
    labelNames: ['kind', 'outcome'],
    registers: [app.metrics.registry]
  })
  const refusals = new Counter({
    name: 'gatehouse_egress_refusals_total',
    help: 'Forward-proxy requests and tunnels refused, by reason (deny_rule, default_deny, special_address, port, auth, rate_limit, bad_request, dns)',
    labelNames: ['reason'],
    registers: [app.metrics.registry]
  })
  const bytes = new Counter({
    name: 'gatehouse_egress_bytes_total',
    help: 'Forward-proxy bytes: "in" from clients towards destinations, "out" to clients',
    labelNames: ['direction'],
    registers: [app.metrics.registry]
  })
  bytes.inc({ direction: 'in' }, 0)
  bytes.inc({ direction: 'out' }, 0)
  app.metrics.gauge('gatehouse_egress_tunnels_open', 'CONNECT tunnels open now', () => stats.activeTunnels)
  app.metrics.gauge('gatehouse_egress_requests_active', 'Forward-proxy HTTP requests in flight now', () => stats.activeRequests)

  function install (loaded: readonly EgressRule[]): void {
    rules = Object.freeze(loaded)
    ruleSet = new EgressRuleSet(loaded, config.egressDefault)
  }

  await app.configChanges.track('egress-rules', async () => {
    const loaded = await listAllEgressRules(app.db)
    install(loaded)
    return loaded
  }, install)

  app.configSections.add<EgressRuleConfigItem>({
    name: 'egressRules',
    kind: 'egress rule',
    itemSchema: EgressRuleConfigItemSchema,
    identify: (item) => `${item.action} ${item.host ?? item.cidr ?? ''} ports ${item.ports.join(',')}`,
    exportItems: async (db) => (await listAllEgressRules(db)).map((rule) => ({ ...rule })),
    problem (items) {
      const ids = new Set<string>()
      for (const [index, item] of items.entries()) {
        const problem = egressRuleProblem(egressRuleWithDefaults(item), `egressRules/${index}`)
        if (problem !== null) return problem
        if (item.id !== undefined) {
          if (ids.has(item.id)) return `egressRules/${index}/id "${item.id}" appears twice`
          ids.add(item.id)
        }
      }
      return null
    },
    async replaceAll (trx, items) {
      await deleteAllEgressRules(trx)
      const now = new Date().toISOString()
      await insertEgressRules(trx, items.map((item) => buildEgressRule(item, now)))
    }
  })

  /** Auth → consumer rate limit → rules on the name → resolve → rules on every address. */
  async function admit (rawHeaders: readonly string[], destination: Destination, tunnel: boolean): Promise<Admitted | Refusal> {
    let consumer: ConsumerIdentity | null = null
    if (config.egressAuth === 'basic') {
      const count = countRawHeader(rawHeaders, 'proxy-authorization')
      if (count > 1) return { status: 400, message: 'more than one Proxy-Authorization header', outcome: 'blocked', reason: 'bad_request' }
      if (count === 0) return { status: 407, message: 'proxy authentication required', outcome: 'unauthorized', reason: 'auth', headers: REALM_CHALLENGE }
      const credentials = parseBasicAuthorization(headerValue(rawHeaders, 'proxy-authorization'))
      if (credentials === null) return { status: 407, message: 'invalid proxy credentials', outcome: 'unauthorized', reason: 'auth', headers: REALM_CHALLENGE }
      try {
        consumer = await app.auth.verifyBasic(credentials)
      } catch (err) {
        if (!(err instanceof BusyError)) throw err
        return { status: 503, message: 'too many password checks in progress; retry shortly', outcome: 'unauthorized', reason: 'auth', headers: { 'retry-after': '1' } }
      }
      if (consumer === null) return { status: 407, message: 'invalid proxy credentials', outcome: 'unauthorized', reason: 'auth', headers: REALM_CHALLENGE }
    }

    const limit = consumer?.rateLimit ?? null
    if (consumer !== null && consumer.id !== null && limit !== null) {
      try {
        const decision = await app.rateLimits.hit(`egress:c:${consumer.id}`, limit.max, limit.windowMs)
        if (!decision.allowed) {
          return {
            status: 429,
            message: `rate limit of ${decision.limit} requests exceeded; retry in ${decision.retryAfterSeconds} s`,
            outcome: 'rate_limited',
            reason: 'rate_limit',
            headers: { 'retry-after': String(decision.retryAfterSeconds) },
            consumer
          }
        }
      } catch (err) {
        if (mayWarn()) app.log.warn({ err: (err as Error).message }, 'rate-limit store unavailable; letting egress traffic through (fail open)')
      }
    }

    const check = { name: destination.isIp ? null : destination.host, port: destination.port, tunnel }
    const byName = ruleSet.checkName(check)
    if (byName !== null) return { status: 403, message: byName.message, outcome: 'blocked', reason: byName.reason, consumer }

    let addresses: string[]
    if (destination.isIp) {
      addresses = [destination.host]
    } else {
      try {
        addresses = await resolveAll(destination.host, dnsTimeoutMs)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        const timedOut = code === 'ETIMEOUT'
        return {
          status: timedOut ? 504 : 502,
          message: timedOut ? `no DNS answer for ${destination.host} in time` : `cannot resolve ${destination.host}: ${code ?? (err as Error).message}`,
          outcome: 'upstream_error',
          reason: 'dns',
          consumer
        }
      }
    }
    // The rules as they are now: a change that landed during the lookup applies.
    const byAddress = ruleSet.checkAddresses(check, addresses)
    if (byAddress !== null) return { status: 403, message: byAddress.message, outcome: 'blocked', reason: byAddress.reason, consumer }
    return { consumer, addresses }
  }

  function refused (kind: 'http' | 'connect', refusal: Refusal): void {
    refusals.inc({ reason: refusal.reason })
    if (refusal.status === 403) stats.blocked++
    exchanges.inc({ kind, outcome: refusal.outcome })
  }

  function record (exchange: Exchange, status: number, outcome: Outcome, bytesIn: number, bytesOut: number, detail: string | null): void {
    stats.bytesIn += bytesIn
    stats.bytesOut += bytesOut
    bytes.inc({ direction: 'in' }, bytesIn)
    bytes.inc({ direction: 'out' }, bytesOut)
    app.audit.recordRequest(auditRow({
      eventType: 'egress',
      requestId: exchange.requestId,
      clientIp: exchange.clientIp,
      method: exchange.method,
      path: exchange.path,
      route: null,
      consumer: exchange.consumer,
      status,
      outcome,
      durationMs: roundMs(performance.now() - exchange.startedAt),
      bytesIn,
      bytesOut,
      userAgent: exchange.userAgent,
      detail,
      traceId: null
    }, new Date().toISOString()))
  }

  function newExchange (request: IncomingMessage, method: string, path: string): Exchange {
    const agentHeader = request.headers['user-agent']
    return {
      requestId: randomUUID(),
      startedAt: performance.now(),
      clientIp: unmapIPv4(request.socket.remoteAddress ?? ''),
      method,
      path,
      userAgent: typeof agentHeader === 'string' ? agentHeader.slice(0, 512) : null,
      consumer: null
    }
  }

  /** CONNECT host:port → 200 and a tunnel, or a JSON refusal on the raw socket. */
  function onConnect (request: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.pause()
    socket.on('error', ignore)
    const target = request.url ?? ''
    const exchange = newExchange(request, 'CONNECT', target.length > 300 ? `${target.slice(0, 300)}…` : target)
    const parsed = parseConnectTarget(target)
    if (!parsed.ok) {
      const refusal: Refusal = { status: 400, message: parsed.problem, outcome: 'blocked', reason: 'bad_request' }
      refused('connect', refusal)
      answerOnSocket(socket, exchange, refusal)
      record(exchange, 400, 'blocked', 0, 0, parsed.problem)
      return
    }
    const destination = parsed.value
    exchange.path = `${destination.isIp && destination.host.includes(':') ? `[${destination.host}]` : destination.host}:${destination.port}`
    const rawHeaders = request.rawHeaders
    admit(rawHeaders, destination, true).then(async (admission) => {
      if ('status' in admission) {
        exchange.consumer = admission.consumer ?? null
        refused('connect', admission)
        answerOnSocket(socket, exchange, admission)
        record(exchange, admission.status, admission.outcome, 0, 0, admission.message)
        return
      }
      exchange.consumer = admission.consumer
      stats.allowed++
      let upstream: Socket
      try {
        upstream = await connectToAny(admission.addresses, destination.port, connectTimeoutMs)
      } catch (err) {
        const timedOut = err instanceof ConnectError && err.timedOut
        const failure: Refusal = { status: timedOut ? 504 : 502, message: `cannot connect to ${exchange.path}: ${(err as Error).message}`, outcome: 'upstream_error', reason: 'connect_failed' }
        exchanges.inc({ kind: 'connect', outcome: 'upstream_error' })
        answerOnSocket(socket, exchange, failure)
        record(exchange, failure.status, 'upstream_error', 0, 0, failure.message)
        return
      }
      if (socket.destroyed || !socket.writable) {
        upstream.destroy()
        exchanges.inc({ kind: 'connect', outcome: 'proxied' })
        record(exchange, 499, 'proxied', 0, 0, 'the client went away before the tunnel opened')
        return
      }
      socket.removeListener('error', ignore)
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      const answerBytes = socket.bytesWritten
      stats.activeTunnels++
      const cut = joinTunnel(socket, upstream, head, config.egressIdleTimeoutMs, (end) => {
        stats.activeTunnels--
        tunnels.delete(cut)
        exchanges.inc({ kind: 'connect', outcome: 'proxied' })
        record(exchange, 200, 'proxied', end.bytesIn, end.bytesOut + answerBytes, `tunnel ${end.how}`)
      })
      tunnels.add(cut)
    }).catch((err: unknown) => {
      app.log.error({ err }, 'egress CONNECT failed')
      socket.destroy()
    })
  }

  /** Absolute-form request → forwarded, or a JSON refusal. */
  function onRequest (request: IncomingMessage, response: ServerResponse): void {
    const url = request.url ?? ''
    const parsed = parseAbsoluteTarget(url)
    const exchange = newExchange(request, request.method ?? 'GET', parsed.ok ? `http://${parsed.value.authority}${parsed.value.path.split('?')[0]}` : url.slice(0, 300))
    const writtenBefore = request.socket.bytesWritten
    stats.activeRequests++
    const finish = (status: number, outcome: Outcome, bytesIn: number, detail: string | null): void => {
      stats.activeRequests--
      record(exchange, status, outcome, bytesIn, Math.max(0, request.socket.bytesWritten - writtenBefore), detail)
    }
    if (!parsed.ok) {
      const refusal: Refusal = { status: 400, message: parsed.problem, outcome: 'blocked', reason: 'bad_request' }
      refused('http', refusal)
      answerJson(request, response, exchange, refusal)
      response.once('close', () => finish(400, 'blocked', 0, parsed.problem))
      return
    }
    const target = parsed.value
    admit(request.rawHeaders, target, false).then(async (admission) => {
      if ('status' in admission) {
        exchange.consumer = admission.consumer ?? null
        refused('http', admission)
        answerJson(request, response, exchange, admission)
        response.once('close', () => finish(admission.status, admission.outcome, 0, admission.message))
        return
      }
      exchange.consumer = admission.consumer
      stats.allowed++
      const method = request.method as string
      const lookup: EgressLookup | null = cache === null ? null : cache.lookup(method, request.headers, target, Date.now())
      if (lookup !== null && lookup.kind === 'hit') {
        const status = answerFromCache(request, response, lookup.entry, lookup.ageSeconds)
        exchanges.inc({ kind: 'http', outcome: 'cached' })
        response.once('close', () => finish(response.writableFinished ? status : 499, 'cached', 0, 'X-Cache-Status: HIT'))
        return
      }
      const result = await forwardHttp(agent, request, response, target, admission.addresses, config.upstreamTimeoutMs, lookup === null ? null : cacheTap(lookup, request))
      const failure = result.failure
      if (failure === null) {
        if (cache !== null && lookup?.kind === 'bypass' && method !== 'GET' && method !== 'HEAD' && result.status < 400) cache.invalidate(target)
        exchanges.inc({ kind: 'http', outcome: 'proxied' })
        return finish(result.status, 'proxied', result.bytesIn, null)
      }
      if (failure.status === 499) {
        exchanges.inc({ kind: 'http', outcome: 'proxied' })
        return finish(response.headersSent ? result.status : 499, 'proxied', result.bytesIn, failure.message)
      }
      exchanges.inc({ kind: 'http', outcome: 'upstream_error' })
      answerJson(request, response, exchange, { status: failure.status, message: failure.message, outcome: 'upstream_error', reason: 'upstream' })
      response.once('close', () => finish(failure.status, 'upstream_error', result.bytesIn, failure.message))
    }).catch((err: unknown) => {
      app.log.error({ err }, 'egress request failed')
      response.destroy()
      finish(502, 'upstream_error', 0, (err as Error).message)
    })
  }

  /** X-Cache-Status on what is forwarded; a GET miss's answer is recorded while it streams. */
  function cacheTap (lookup: Exclude<EgressLookup, { kind: 'hit' }>, request: IncomingMessage): AnswerTap {
    const started = Date.now()
    return (status, headers, head) => {
      head['x-cache-status'] = lookup.kind === 'miss' ? lookup.label : 'BYPASS'
      if (cache === null || lookup.kind !== 'miss' || !lookup.fill) return null
      return cache.recorder(lookup.key, request.headers, status, headers, started)
    }
  }

  let listener: EgressListener | null = null
  let closingAt = 0

  app.decorate('egress', {
    async listen (port, host) {
      if (listener !== null) throw new Error('the egress listener is already listening')
      listener = createEgressListener({
        headersTimeoutMs: config.headersTimeoutMs,
        requestTimeoutMs: config.requestTimeoutMs,
        keepAliveTimeoutMs: config.keepAliveTimeoutMs,
        maxConnections: config.egressMaxConnections,
        onRequest,
        onConnect,
        onClientError (socket, status, message) {
          refusals.inc({ reason: 'bad_request' })
          exchanges.inc({ kind: 'http', outcome: status === 431 ? 'too_large' : 'blocked' })
          record({
            requestId: randomUUID(),
            startedAt: performance.now(),
            clientIp: unmapIPv4(socket.remoteAddress ?? ''),
            method: 'OTHER',
            path: '',
            userAgent: null,
            consumer: null
          }, status, status === 431 ? 'too_large' : 'blocked', 0, 0, message)
        }
      })
      app.connectionCap.apply(listener.front, 'egress')
      listener.front.maxConnections = config.egressMaxConnections
      await listener.listen(port, host)
      app.log.info({ port: listener.port, host }, 'egress (forward proxy) listening')
    },
    get port () { return listener === null ? null : listener.port },
    stats,
    get rules () { return rules }
  } satisfies Egress)

  // The listener stops accepting together with the main one; open tunnels and requests get
  // until SHUTDOWN_GRACE_MS (docs/egress.md "Shutdown").
  app.addHook('preClose', async () => {
    closingAt = Date.now()
    listener?.stopAccepting()
  })
  app.addHook('onClose', async () => {
    const current = listener
    if (current !== null) {
      const deadline = (closingAt === 0 ? Date.now() : closingAt) + config.shutdownGraceMs
      while (Date.now() < deadline && (stats.activeTunnels > 0 || stats.activeRequests > 0)) {
        current.http.closeIdleConnections()
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      if (stats.activeTunnels > 0) app.log.warn({ tunnels: stats.activeTunnels }, 'shutdown grace period over: closing the open egress tunnels')
      for (const cut of tunnels) cut()
      current.closeAll()
      // Tunnel and request rows are recorded as their sockets close: let those events run.
      await new Promise((resolve) => setImmediate(resolve))
    }
    await agent.close().catch(() => {})
  })
}

function ignore (): void {}

function headerValue (rawHeaders: readonly string[], lowerName: string): string {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() === lowerName) return rawHeaders[i + 1]
  }
  return ''
}

function errorJson (status: number, message: string, requestId: string): string {
  return JSON.stringify({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message, requestId })
}

/** A refusal on a CONNECT socket (no HTTP response object there); the connection closes. */
function answerOnSocket (socket: Socket, exchange: Exchange, refusal: Refusal): void {
  if (socket.destroyed || !socket.writable) return
  const body = errorJson(refusal.status, refusal.message, exchange.requestId)
  let head = `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? 'Error'}\r\ncontent-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${exchange.requestId}\r\nvia: 1.1 gatehouse\r\nconnection: close\r\n`
  for (const [name, value] of Object.entries(refusal.headers ?? {})) head += `${name}: ${value}\r\n`
  socket.end(`${head}\r\n${body}`)
  socket.resume()
}

/** A stored answer (HEAD: its head only; 304 when the request's validators match), with its Age. Returns the status sent. */
function answerFromCache (request: IncomingMessage, response: ServerResponse, entry: CacheEntry, age: number): number {
  if (!request.complete) response.shouldKeepAlive = false
  if (notModified(request.headers, entry)) {
    const head: Record<string, string | string[]> = {}
    for (const name of NOT_MODIFIED_HEADERS) {
      const value = entry.headers[name]
      if (value !== undefined) head[name] = value
    }
    response.writeHead(304, { ...head, age: String(age), 'x-cache-status': 'HIT', via: '1.1 gatehouse' })
    response.end()
    return 304
  }
  const head = addUpstreamResponseHeaders({}, entry.headers as IncomingHttpHeaders)
  head.age = String(age)
  head['x-cache-status'] = 'HIT'
  if (entry.status !== 204) head['content-length'] = entry.body.length
  response.writeHead(entry.status, head)
  response.end(request.method === 'HEAD' || entry.status === 204 ? undefined : entry.body)
  return entry.status
}

function answerJson (request: IncomingMessage, response: ServerResponse, exchange: Exchange, refusal: Refusal): void {
  if (response.headersSent) {
    response.destroy()
    return
  }
  const body = errorJson(refusal.status, refusal.message, exchange.requestId)
  // An unread request body is not drained for the next request: the connection closes instead.
  if (!request.complete) response.shouldKeepAlive = false
  response.writeHead(refusal.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': exchange.requestId,
    via: '1.1 gatehouse',
    ...refusal.headers
  })
  response.end(body)
}

export default fp(egressPlugin, { name: 'egress', dependencies: ['db', 'config-changes', 'config-sections', 'metrics', 'connection-cap', 'audit', 'auth', 'rate-limit', 'cache'] })
