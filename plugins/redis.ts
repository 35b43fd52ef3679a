import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Redis, type RedisOptions } from 'ioredis'
import { randomUUID } from 'node:crypto'
import { atMostEvery } from '../lib/at-most-every.js'
import { RedisBreaker } from '../lib/redis-breaker.js'

/**
 * Redis, when REDIS_URL is set: shared rate-limit counters
 * (policies/rate-limit/) and a config-change broadcast. The database's config_version stays
 * the source of truth; the broadcast only makes other instances look at it at once instead
 * of at their next poll, and the poll remains the safety net when Redis is away.
 *
 * Redis being down must cost a proxied request at most REDIS_TIMEOUT_MS, and only a handful of
 * them (docs/policies.md "Redis outage"): no offline queue (a command fails at once while disconnected),
 * a command timeout of REDIS_TIMEOUT_MS, no per-command retries, reconnection forever with a
 * capped back-off, and a breaker (lib/redis-breaker.ts) that bypasses Redis after
 * BREAKER_THRESHOLD failures in a row until a probe finds it back.
 */
const BREAKER_THRESHOLD = 3

export interface RedisState {
  /** null when REDIS_URL is unset. */
  readonly client: Redis | null
  /** Prepended to every key and channel, so tests and deployments can share one Redis. */
  readonly keyPrefix: string
  /** Whether the command connection is ready right now. */
  readonly ready: boolean
  /** Whether commands are sent to Redis: false while the breaker is open (gatehouse_redis_up). */
  readonly up: boolean
  /**
   * Runs a command on the request path through the breaker: rejects at once with
   * RedisUnavailableError while Redis is taken as down.
   */
  run: <T>(command: () => Promise<T>) => Promise<T>
  /** The `redis` section of GET /admin/status. */
  status: () => RedisStatus
  /** Broadcasts received that made this instance refresh. */
  readonly broadcastsReceived: number
}

declare module 'fastify' {
  interface FastifyInstance {
    redis: RedisState
  }
}

export interface RedisStatus {
  configured: boolean
  up: boolean
  /** When `up` last changed (ISO); null when Redis is not configured. */
  since: string | null
  consecutiveFailures: number
  /** Why Redis is taken as down; null while up. */
  lastError: string | null
  /** Commands not sent since start because Redis was taken as down. */
  bypassed: number
}

export interface RedisPluginOptions {
  keyPrefix?: string
  /** Default: REDIS_TIMEOUT_MS. */
  commandTimeoutMs?: number
  connectTimeoutMs?: number
  /** How often a down Redis is probed (default 1000 ms). */
  probeIntervalMs?: number
}

export function redisClientOptions (options: RedisPluginOptions): RedisOptions {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: options.connectTimeoutMs ?? 500,
    commandTimeout: options.commandTimeoutMs ?? 100,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
    // A READONLY replica after a failover: reconnect to find the new primary.
    reconnectOnError: (err) => err.message.startsWith('READONLY')
  }
}

const redisPlugin: FastifyPluginAsync<RedisPluginOptions> = async (app, options) => {
  const keyPrefix = options.keyPrefix ?? 'gatehouse:'
  const url = app.config.redisUrl
  let broadcastsReceived = 0
  if (url === null) {
    app.decorate('redis', {
      client: null,
      keyPrefix,
      ready: false,
      up: false,
      broadcastsReceived: 0,
      run: async () => { throw new Error('REDIS_URL is not set') },
      status: () => ({ configured: false, up: false, since: null, consecutiveFailures: 0, lastError: null, bypassed: 0 })
    } satisfies RedisState)
    return
  }

  const clientOptions = { ...options, commandTimeoutMs: options.commandTimeoutMs ?? app.config.redisTimeoutMs }
  const client = new Redis(url, redisClientOptions(clientOptions))
  // The subscriber keeps its SUBSCRIBE queued while reconnecting (one command, bounded)
  // and resubscribes by itself after every reconnect.
  const subscriber = new Redis(url, { ...redisClientOptions(clientOptions), enableOfflineQueue: true, commandTimeout: undefined })
  const channel = `${keyPrefix}config-changes`
  const instanceId = randomUUID()
  // ioredis emits an error per failed reconnect attempt; one warning every 10 s is enough, and
  // the first failure after it is back warns at once.
  let mayWarn = atMostEvery(10_000)
  const onError = (err: Error): void => {
    if (mayWarn()) app.log.warn({ err: err.message }, 'redis unavailable; rate limits fail open and config changes arrive by polling until it returns')
  }
  client.on('error', onError)
  subscriber.on('error', onError)
  client.on('ready', () => { mayWarn = atMostEvery(10_000) })

  const breaker = new RedisBreaker({
    threshold: BREAKER_THRESHOLD,
    probeIntervalMs: options.probeIntervalMs ?? 1000,
    probe: async () => await client.ping(),
    onChange: (up, reason) => {
      if (up) app.log.info('redis is back; rate limits are enforced again')
      else app.log.warn({ reason }, 'redis taken as down; bypassed (rate limits fail open) until a probe finds it back')
    }
  })
  // A fresh connection has just answered the ready check; a closed one fails every command.
  client.on('ready', () => breaker.markUp())
  client.on('close', () => breaker.markDown('connection closed'))

  app.decorate('redis', {
    client,
    keyPrefix,
    get ready () { return client.status === 'ready' },
    get up () { return breaker.up },
    get broadcastsReceived () { return broadcastsReceived },
    run: (command) => breaker.run(command),
    status: () => ({
      configured: true,
      up: breaker.up,
      since: new Date(breaker.since).toISOString(),
      consecutiveFailures: breaker.consecutiveFailures,
      lastError: breaker.lastError,
      bypassed: breaker.bypassed
    })
  } satisfies RedisState)
  app.metrics.gauge('gatehouse_redis_up', 'Whether Redis (REDIS_URL) is in use: 1 up, 0 down and bypassed (rate limits fail open)', () => breaker.up ? 1 : 0)

  // Start even when Redis is down: the gateway must not depend on it to serve.
  await Promise.all([
    client.connect().catch((err: Error) => onError(err)),
    subscriber.connect().catch((err: Error) => onError(err))
  ])

  // Every version this instance moves to is announced once, unless a broadcast announced it
  // already (then it came from elsewhere and everyone has been told).
  let lastBroadcast = app.configChanges.version
  subscriber.on('message', (_channel: string, message: string) => {
    let parsed: { version?: unknown, from?: unknown }
    try { parsed = JSON.parse(message) } catch { return }
    if (parsed.from === instanceId || typeof parsed.version !== 'number') return
    if (parsed.version > lastBroadcast) lastBroadcast = parsed.version
    if (parsed.version <= app.configChanges.version) return
    broadcastsReceived++
    app.configChanges.refresh().catch((err: unknown) => app.log.warn({ err }, 'refresh after a config broadcast failed'))
  })
  // Messages sent while we were disconnected are lost: look at the database on reconnect.
  subscriber.on('ready', () => {
    app.configChanges.refresh().catch((err: unknown) => app.log.warn({ err }, 'refresh after redis reconnect failed'))
  })
  subscriber.subscribe(channel).catch((err: Error) => onError(err))

  await app.configChanges.onChange('redis-broadcast', async () => {
    const version = app.configChanges.version
    if (version <= lastBroadcast) return
    lastBroadcast = version
    client.publish(channel, JSON.stringify({ version, from: instanceId })).catch((err: Error) => onError(err))
  })

  app.addHook('onClose', async () => {
    breaker.close()
    await Promise.all([quit(client), quit(subscriber)])
  })
}

async function quit (redis: Redis): Promise<void> {
  if (redis.status === 'ready') {
    await redis.quit().catch(() => redis.disconnect())
  } else {
    redis.disconnect()
  }
}

export default fp(redisPlugin, { name: 'redis', dependencies: ['config-changes', 'metrics'] })
