import { BIN_COUNT, binOf, quantileMs } from './latency-histogram.js'

/**
 * Recent traffic of one instance in 10-second buckets aligned on the wall clock (so buckets of
 * different instances line up), kept in memory in a ring: what GET /admin/metrics/timeseries
 * answers and what the heartbeat carries to the other instances (docs/dashboard.md).
 *
 * Recording is a few increments into the current bucket: the proxied path pays nothing else.
 */
export const BUCKET_MS = 10_000
/** 16 minutes: a full 15-minute window plus the bucket in progress. */
export const RING_BUCKETS = 96
export const MAX_WINDOW_SECONDS = 900

export type StatusClassCounts = Record<'1xx' | '2xx' | '3xx' | '4xx' | '5xx', number>

interface Bucket {
  /** Start of the bucket, ms since the epoch (a multiple of BUCKET_MS). */
  start: number
  requests: number
  byStatusClass: [number, number, number, number, number]
  bytesIn: number
  bytesOut: number
  rateLimited: number
  blocked: number
  latency: Uint32Array
}

/**
 * A bucket as stored in the heartbeat row: short keys, histogram as [bin, count, bin, count, …]
 * of its non-empty bins only.
 */
export interface StoredBucket {
  t: number
  n: number
  s: number[]
  i: number
  o: number
  r: number
  b: number
  h: number[]
}

export interface SeriesPoint {
  ts: string
  requests: number
  byStatusClass: StatusClassCounts
  p50: number | null
  p95: number | null
  p99: number | null
  bytesIn: number
  bytesOut: number
  rateLimited: number
  blocked: number
}

/** What record() needs to know about the request's outcome. */
export type CountedOutcome = 'rate_limited' | 'blocked' | string

export class TrafficRing {
  private readonly buckets = new Array<Bucket | undefined>(RING_BUCKETS)

  record (now: number, status: number, durationMs: number, bytesIn: number, bytesOut: number, outcome: CountedOutcome): void {
    const bucket = this.bucketAt(now)
    bucket.requests++
    const statusClass = Math.floor(status / 100) - 1
    bucket.byStatusClass[statusClass >= 0 && statusClass <= 4 ? statusClass : 4]++
    bucket.bytesIn += bytesIn
    bucket.bytesOut += bytesOut
    if (outcome === 'rate_limited') bucket.rateLimited++
    else if (outcome === 'blocked') bucket.blocked++
    if (durationMs >= 0) bucket.latency[binOf(durationMs)]++
  }

  private bucketAt (now: number): Bucket {
    const index = Math.floor(now / BUCKET_MS)
    const slot = index % RING_BUCKETS
    const start = index * BUCKET_MS
    let bucket = this.buckets[slot]
    if (bucket === undefined) {
      bucket = { start, requests: 0, byStatusClass: [0, 0, 0, 0, 0], bytesIn: 0, bytesOut: 0, rateLimited: 0, blocked: 0, latency: new Uint32Array(BIN_COUNT) }
      this.buckets[slot] = bucket
    } else if (bucket.start !== start) {
      // The slot held a bucket one ring-turn ago: reused in place.
      bucket.start = start
      bucket.requests = 0
      bucket.byStatusClass.fill(0)
      bucket.bytesIn = 0
      bucket.bytesOut = 0
      bucket.rateLimited = 0
      bucket.blocked = 0
      bucket.latency.fill(0)
    }
    return bucket
  }

  /** The non-empty buckets that started at or after `since`, oldest first, in the stored form. */
  stored (since: number, now: number): StoredBucket[] {
    const out: StoredBucket[] = []
    for (const bucket of this.buckets) {
      if (bucket === undefined || bucket.requests === 0 || bucket.start < since || bucket.start > now) continue
      const h: number[] = []
      for (let bin = 0; bin < bucket.latency.length; bin++) if (bucket.latency[bin] !== 0) h.push(bin, bucket.latency[bin])
      out.push({ t: bucket.start, n: bucket.requests, s: [...bucket.byStatusClass], i: bucket.bytesIn, o: bucket.bytesOut, r: bucket.rateLimited, b: bucket.blocked, h })
    }
    return out.sort((a, b) => a.t - b.t)
  }

  /** Requests in the last complete bucket, per second. */
  requestsPerSecond (now: number): number {
    const start = (Math.floor(now / BUCKET_MS) - 1) * BUCKET_MS
    const bucket = this.buckets[(start / BUCKET_MS) % RING_BUCKETS]
    return bucket !== undefined && bucket.start === start ? bucket.requests / (BUCKET_MS / 1000) : 0
  }
}

/** The whole instance's ring and one per route id (created on a route's first request). */
export class Timeseries {
  readonly total = new TrafficRing()
  readonly routes = new Map<string, TrafficRing>()

  record (routeId: string | null, status: number, durationMs: number, bytesIn: number, bytesOut: number, outcome: CountedOutcome): void {
    const now = Date.now()
    this.total.record(now, status, durationMs, bytesIn, bytesOut, outcome)
    if (routeId === null) return
    let ring = this.routes.get(routeId)
    if (ring === undefined) {
      ring = new TrafficRing()
      this.routes.set(routeId, ring)
    }
    ring.record(now, status, durationMs, bytesIn, bytesOut, outcome)
  }

  /** Drops the rings of routes that no longer exist. */
  retainRoutes (ids: Iterable<string>): void {
    const keep = new Set(ids)
    for (const id of this.routes.keys()) if (!keep.has(id)) this.routes.delete(id)
  }

  /** What the heartbeat stores: the last 15 minutes, whole and per route. */
  stored (now: number): StoredSeries {
    const since = now - MAX_WINDOW_SECONDS * 1000 - BUCKET_MS
    const routes: Record<string, StoredBucket[]> = {}
    for (const [id, ring] of this.routes) {
      const buckets = ring.stored(since, now)
      if (buckets.length > 0) routes[id] = buckets
    }
    return { total: this.total.stored(since, now), routes }
  }
}

export interface StoredSeries {
  total: StoredBucket[]
  routes: Record<string, StoredBucket[]>
}

/**
 * Sums buckets (of one or many instances) into steps of `stepSeconds` over the last
 * `windowSeconds` ending with the step in progress at `now`; every step is present, empty ones
 * with zero requests and null percentiles.
 */
export function aggregate (sources: StoredBucket[][], windowSeconds: number, stepSeconds: number, now: number): SeriesPoint[] {
  const stepMs = stepSeconds * 1000
  const steps = Math.floor(windowSeconds / stepSeconds)
  const lastStart = Math.floor(now / stepMs) * stepMs
  const firstStart = lastStart - (steps - 1) * stepMs
  const sums = Array.from({ length: steps }, (_, index) => ({
    start: firstStart + index * stepMs,
    requests: 0,
    byStatusClass: [0, 0, 0, 0, 0],
    bytesIn: 0,
    bytesOut: 0,
    rateLimited: 0,
    blocked: 0,
    latency: new Array<number>(BIN_COUNT).fill(0)
  }))
  for (const buckets of sources) {
    for (const bucket of buckets) {
      const index = Math.floor((bucket.t - firstStart) / stepMs)
      if (index < 0 || index >= steps) continue
      const sum = sums[index]
      sum.requests += bucket.n
      for (let c = 0; c < 5; c++) sum.byStatusClass[c] += bucket.s[c] ?? 0
      sum.bytesIn += bucket.i
      sum.bytesOut += bucket.o
      sum.rateLimited += bucket.r
      sum.blocked += bucket.b
      for (let k = 0; k + 1 < bucket.h.length; k += 2) {
        const bin = bucket.h[k]
        if (bin >= 0 && bin < BIN_COUNT) sum.latency[bin] += bucket.h[k + 1]
      }
    }
  }
  return sums.map((sum) => ({
    ts: new Date(sum.start).toISOString(),
    requests: sum.requests,
    byStatusClass: { '1xx': sum.byStatusClass[0], '2xx': sum.byStatusClass[1], '3xx': sum.byStatusClass[2], '4xx': sum.byStatusClass[3], '5xx': sum.byStatusClass[4] },
    p50: quantileMs(sum.latency, 0.5),
    p95: quantileMs(sum.latency, 0.95),
    p99: quantileMs(sum.latency, 0.99),
    bytesIn: sum.bytesIn,
    bytesOut: sum.bytesOut,
    rateLimited: sum.rateLimited,
    blocked: sum.blocked
  }))
}

/** Parses a stored series column; anything malformed counts as no traffic rather than failing the answer. */
export function parseStoredSeries (text: string | null): StoredSeries {
  if (text === null) return { total: [], routes: {} }
  try {
    const parsed = JSON.parse(text) as Partial<StoredSeries>
    return { total: Array.isArray(parsed.total) ? parsed.total : [], routes: typeof parsed.routes === 'object' && parsed.routes !== null ? parsed.routes : {} }
  } catch {
    return { total: [], routes: {} }
  }
}
