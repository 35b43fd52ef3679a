import { performance } from 'node:perf_hooks'
import type { OtlpExporter } from './otlp-exporter.js'
import { newSpanId, startTrace, type TraceContext, traceparentOf } from './trace-context.js'

/** Epoch milliseconds (fractional) of a performance.now() value. */
const epochMs = (now: number): number => performance.timeOrigin + now

/**
 * One upstream attempt's client span. The upstream's traceparent names it as parent whether or
 * not spans are exported; `end()` queues it for export when the trace is recorded. The status
 * or error may be filled in just after end() (the attempt's "settled" and its failure are told
 * in either order): the record is serialised only when its batch leaves.
 */
export class ClientSpan {
  readonly spanId = newSpanId()
  readonly traceparent: string
  status = 0
  error: string | null = null
  private readonly startMs = performance.now()
  private ended = false

  constructor (
    private readonly tracer: Tracer,
    private readonly trace: TraceContext,
    private readonly method: string,
    private readonly target: string,
    private readonly retryCount: number
  ) {
    this.traceparent = traceparentOf(trace, this.spanId)
  }

  end (): void {
    if (this.ended) return
    this.ended = true
    const exporter = this.tracer.exporter
    if (exporter === null || !this.trace.sampled) return
    const attributes: Record<string, string | number> = {
      'http.request.method': this.method,
      'url.full': this.target,
      'gatehouse.retry_count': this.retryCount
    }
    const span = this
    exporter.add({
      traceId: this.trace.traceId,
      spanId: this.spanId,
      parentSpanId: this.trace.spanId,
      name: this.method,
      kind: 'client',
      startMs: epochMs(this.startMs),
      endMs: epochMs(performance.now()),
      attributes,
      error: false,
      complete () {
        if (span.status !== 0) attributes['http.response.status_code'] = span.status
        if (span.error !== null) attributes['error.type'] = span.error
        this.error = span.error !== null || span.status >= 500
      }
    })
  }
}

export interface ServerSpanEnd {
  method: string
  route: string | null
  path: string
  status: number
  outcome: string
  target: string | null
  /** performance.now() when the request arrived. */
  startedAt: number
}

/**
 * Trace context for proxied requests (docs/logging.md "Tracing"): every request gets one (a
 * client's valid traceparent continued, else a new trace), the upstream exactly one
 * traceparent; with an exporter, sampled requests' server and client spans are exported.
 */
export class Tracer {
  constructor (readonly ratio: number, readonly exporter: OtlpExporter | null) {}

  start (traceparent: string | undefined): TraceContext {
    return startTrace(traceparent, this.ratio)
  }

  /** A client span for one upstream attempt; `retryCount` attempts went before it. */
  clientSpan (trace: TraceContext, method: string, target: string, retryCount: number): ClientSpan {
    trace.attempts = retryCount + 1
    return new ClientSpan(this, trace, method, target, retryCount)
  }

  serverSpanEnded (trace: TraceContext, end: ServerSpanEnd): void {
    if (this.exporter === null || !trace.sampled) return
    const attributes: Record<string, string | number> = {
      'http.request.method': end.method,
      'url.path': end.path,
      'http.response.status_code': end.status,
      'gatehouse.outcome': end.outcome,
      'gatehouse.retry_count': Math.max(0, trace.attempts - 1)
    }
    if (end.route !== null) attributes['http.route'] = end.route
    if (end.target !== null) attributes['gatehouse.target'] = end.target
    this.exporter.add({
      traceId: trace.traceId,
      spanId: trace.spanId,
      parentSpanId: trace.parentSpanId,
      name: end.route === null ? end.method : `${end.method} ${end.route}`,
      kind: 'server',
      startMs: epochMs(end.startedAt),
      endMs: epochMs(performance.now()),
      attributes,
      error: end.status >= 500
    })
  }
}
