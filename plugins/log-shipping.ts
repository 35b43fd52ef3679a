import cluster from 'node:cluster'
import { openSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import pino from 'pino'
import { atMostEvery } from '../lib/at-most-every.js'
import { BATCH_DEFAULTS, BatchQueue, type QueueCounters } from '../lib/log-sinks/batch-queue.js'
import { elasticsearchSender } from '../lib/log-sinks/elasticsearch-sink.js'
import { httpSender } from '../lib/log-sinks/http-sink.js'
import type { LineSender } from '../lib/log-sinks/line-sender.js'
import type { LogEntry } from '../lib/log-sinks/log-entry.js'
import { lokiSender } from '../lib/log-sinks/loki-sink.js'
import { S3Uploader } from '../lib/log-sinks/s3-uploader.js'
import { parseSinkUrl, redactSinkUrl, type SinkSpec } from '../lib/log-sinks/sink-url.js'
import { syslogSender } from '../lib/log-sinks/syslog-sink.js'
import { RotatingFile } from '../lib/rotating-file.js'
import type { NewAuditLogRow } from '../repositories/database.js'
import { collected, type SampleValue } from './metrics.js'

/** One sink as /admin/status shows it (its URL with any password replaced by ***). */
export interface LogSinkStatus {
  sink: string
  queued: number
  sent: number
  dropped: number
  retries: number
  lastError: string | null
}

export interface LogShipping {
  /** A file or a sink takes access-log lines: plugins/access-log.ts builds them only then. */
  readonly enabled: boolean
  /** One access-log line: the same fields (reqId included) as the stdout line of the request. */
  access: (fields: Record<string, unknown>) => void
  /** An audit row other than a request's (request rows are the access-log lines): shipped to the line sinks. */
  auditRow: (row: NewAuditLogRow) => void
  status: () => LogSinkStatus[]
  /** The access-log file this process writes (with WORKERS > 1, its own), or null. */
  readonly file: string | null
}

declare module 'fastify' {
  interface FastifyInstance {
    logShipping: LogShipping
  }
}

export interface LogShippingOptions {
  /** Batch timing; tests shorten the 1 s wait and the 60 s retry window. */
  maxWaitMs?: number
  retryWindowMs?: number
  firstRetryMs?: number
  maxRetryDelayMs?: number
}

interface Sink {
  label: string
  queue: BatchQueue<LogEntry>
  close: () => Promise<void>
}

/**
 * With WORKERS > 1 every worker writes its own file: PATH's name gets "-worker<N>" before its
 * extension (access.log → access-worker1.log), N the worker's slot (1…WORKERS), kept by
 * the worker that replaces a dead one. One writer per file, no lines interleaved, no IPC on
 * the request path (docs/logging.md "With WORKERS > 1").
 */
export function workerFile (file: string, slot: string | undefined): string {
  if (slot === undefined) return file
  const ext = path.extname(file)
  return `${file.slice(0, file.length - ext.length)}-worker${slot}${ext}`
}

/**
 * ACCESS_LOG_FILE (size rotation, reopen on SIGHUP) and LOG_SINKS (docs/logging.md): every
 * access-log line and admin audit row is serialised once, appended to the file and pushed to
 * each line sink's bounded queue; batches leave off the request path, retried with backoff,
 * dropped and counted when a sink stays down. S3 sinks upload each rotated file, and at
 * shutdown the current one. The queues drain at shutdown until SHUTDOWN_GRACE_MS is over.
 */
const logShippingPlugin: FastifyPluginAsync<LogShippingOptions> = async (app, options) => {
  const { config } = app
  const slot = cluster.isWorker ? process.env.GATEHOUSE_WORKER_SLOT ?? String(cluster.worker?.id ?? 0) : undefined
  const instance = slot === undefined ? hostname() : `${hostname()}-w${slot}`
  const timing = {
    retryWindowMs: options.retryWindowMs ?? BATCH_DEFAULTS.retryWindowMs,
    firstRetryMs: options.firstRetryMs ?? BATCH_DEFAULTS.firstRetryMs,
    maxRetryDelayMs: options.maxRetryDelayMs ?? BATCH_DEFAULTS.maxRetryDelayMs
  }
  const sinkWarning = atMostEvery(10_000)
  const fileWarning = atMostEvery(10_000)

  const specs = config.logSinks.map((raw) => ({ raw, spec: parseSinkUrl(raw) }))
  const sinks: Sink[] = []
  const uploaders: Array<{ label: string, uploader: S3Uploader }> = []
  for (const { raw, spec } of specs) {
    const label = redactSinkUrl(raw)
    if (spec.kind === 's3') {
      const uploader = new S3Uploader({ ...spec, instance }, timing)
      uploaders.push({ label, uploader })
      continue
    }
    const sender = senderOf(spec, instance)
    const queue = new BatchQueue<LogEntry>({
      ...BATCH_DEFAULTS,
      ...timing,
      maxQueued: config.logSinkQueue,
      maxWaitMs: options.maxWaitMs ?? BATCH_DEFAULTS.maxWaitMs,
      send: sender.send,
      onError: (error) => { if (sinkWarning()) app.log.warn({ sink: label, error }, 'log sink: sending failed; retried with backoff, then dropped') }
    })
    sinks.push({ label, queue, close: sender.close })
  }

  const fileName = config.accessLogFile === null ? null : workerFile(config.accessLogFile, slot)
  const file = fileName === null
    ? null
    : new RotatingFile({
      path: fileName,
      rotateBytes: config.accessLogRotateBytes,
      keep: config.accessLogKeep,
      onRotated: uploaders.length === 0
        ? undefined
        : (rotatedPath, fd) => {
            // Each uploader gets its own descriptor: they close theirs when done.
            uploaders.forEach(({ uploader }, i) => {
              uploader.add({ path: rotatedPath, fd: i === 0 ? fd : openSync(rotatedPath, 'r'), rotatedAt: Date.now() })
            })
          },
      onError: (err) => { if (fileWarning()) app.log.error({ err, file: fileName }, 'access-log file: writing failed; lines lost') }
    })

  // Lines in the stdout access log's format (pino: level, time, pid, hostname, then the fields).
  let type = 'request'
  const lineLogger = pino({ level: 'info' }, {
    write (line: string) {
      file?.write(line)
      if (sinks.length === 0) return
      const entry: LogEntry = { type, timeMs: Date.now(), line: line.slice(0, -1) }
      for (const sink of sinks) sink.queue.push(entry)
    }
  })

  const enabled = file !== null || sinks.length > 0
  app.decorate('logShipping', {
    enabled,
    file: fileName,
    access (fields: Record<string, unknown>) { lineLogger.info(fields, 'request completed') },
    auditRow (row: NewAuditLogRow) {
      if (sinks.length === 0) return
      type = row.event_type
      let detail: unknown = row.detail
      try {
        detail = typeof row.detail === 'string' ? JSON.parse(row.detail) : row.detail
      } catch {}
      lineLogger.info({ ...row, detail }, 'audit')
      type = 'request'
    },
    status: () => [
      ...sinks.map(({ label, queue }) => sinkStatus(label, queue)),
      ...uploaders.map(({ label, uploader }) => sinkStatus(label, uploader.queue))
    ]
  } satisfies LogShipping)

  if (sinks.length + uploaders.length > 0) registerMetrics()

  if (file !== null) {
    const reopen = (): void => {
      file.reopen()
      app.log.info({ file: fileName }, 'SIGHUP: access-log file reopened')
    }
    process.on('SIGHUP', reopen)
    app.addHook('onClose', async () => { process.off('SIGHUP', reopen) })
  }

  let closeStartedAt = 0
  app.addHook('preClose', async () => { closeStartedAt = Date.now() })
  // Registered before audit and access-log, so this runs after their onClose hooks: the last
  // lines are in the queues when they drain.
  app.addHook('onClose', async () => {
    const deadline = Math.max((closeStartedAt || Date.now()) + config.shutdownGraceMs, Date.now() + 1000)
    if (file !== null) {
      if (uploaders.length > 0) file.rotateNow()
      file.close()
    }
    await Promise.all([
      ...sinks.map(async ({ queue }) => { await queue.drain(deadline) }),
      ...uploaders.map(async ({ uploader }) => { await uploader.queue.drain(deadline) })
    ])
    const lost = [...sinks.map(({ label, queue }) => ({ label, queue })), ...uploaders.map(({ label, uploader }) => ({ label, queue: uploader.queue }))]
      .filter(({ queue }) => queue.dropped > 0)
      .map(({ label, queue }) => ({ sink: label, dropped: queue.dropped }))
    if (lost.length > 0) app.log.warn({ sinks: lost }, 'log sinks: lines dropped since start (queue full, refused, or unsent at shutdown)')
    await Promise.all(sinks.map(async (sink) => { await sink.close().catch(() => {}) }))
    for (const { uploader } of uploaders) uploader.close()
  })

  function registerMetrics (): void {
    const all = (): Array<{ label: string, queue: QueueCounters }> => [
      ...sinks.map(({ label, queue }) => ({ label, queue })),
      ...uploaders.map(({ label, uploader }) => ({ label, queue: uploader.queue }))
    ]
    const perSink = (name: string, help: string, type: 'counter' | 'gauge', read: (queue: QueueCounters) => number): void => {
      app.metrics.registry.registerMetric(collected(name, help, type,
        () => all().map(({ label, queue }): SampleValue => ({ value: read(queue), labels: { sink: label } }))) as never)
    }
    perSink('gatehouse_log_sink_sent_total', 'Lines (S3: files) each log sink accepted', 'counter', (queue) => queue.sent)
    perSink('gatehouse_log_sink_dropped_total', 'Lines (S3: files) dropped per log sink: queue full, refused by the sink, retries ran out, or unsent at shutdown', 'counter', (queue) => queue.dropped)
    perSink('gatehouse_log_sink_retries_total', 'Batches sent again after a failure, per log sink', 'counter', (queue) => queue.retries)
    perSink('gatehouse_log_sink_queue_depth', 'Lines (S3: files) waiting per log sink, the batch in flight included', 'gauge', (queue) => queue.queued)
  }
}

function sinkStatus (label: string, queue: QueueCounters): LogSinkStatus {
  return { sink: label, queued: queue.queued, sent: queue.sent, dropped: queue.dropped, retries: queue.retries, lastError: queue.lastError }
}

function senderOf (spec: Exclude<SinkSpec, { kind: 's3' }>, instance: string): LineSender {
  switch (spec.kind) {
    case 'loki': return lokiSender(spec.origin, spec.authorization, instance)
    case 'elasticsearch': return elasticsearchSender(spec.origin, spec.index, spec.authorization)
    case 'syslog': return syslogSender(spec.transport, spec.host, spec.port, hostname())
    case 'http': return httpSender(spec.url, spec.authorization)
  }
}

export default fp(logShippingPlugin, { name: 'log-shipping', dependencies: ['metrics'] })
