import t from 'tap'
import { BIN_COUNT, binOf, quantileMs, upperBoundMs } from '../../lib/latency-histogram.js'
import { aggregate, BUCKET_MS, TrafficRing, RING_BUCKETS } from '../../lib/timeseries.js'

t.test('a duration falls in the bin whose bounds hold it; percentiles are the bin upper bound, never below the truth', async (t) => {
  for (const ms of [0.005, 0.01, 0.0125, 0.3, 1, 7.7, 250, 59_000]) {
    const bin = binOf(ms)
    t.ok(upperBoundMs(bin) >= ms, `${ms} ≤ upper bound`)
    t.ok(upperBoundMs(bin) <= Math.max(ms * 1.25, 0.01) * 1.000001, `${ms}: at most 25 % above`)
    if (bin > 0) t.ok(upperBoundMs(bin - 1) < ms)
  }
  t.equal(binOf(1e9), BIN_COUNT - 1)
  const counts = new Array<number>(BIN_COUNT).fill(0)
  t.equal(quantileMs(counts, 0.5), null)
  // 98 fast requests, 2 slow ones: p50 fast, p99 slow.
  counts[binOf(1)] = 98
  counts[binOf(500)] = 2
  t.ok(quantileMs(counts, 0.5)! >= 1 && quantileMs(counts, 0.5)! < 1.25)
  t.ok(quantileMs(counts, 0.95)! < 1.25)
  t.ok(quantileMs(counts, 0.99)! >= 500 && quantileMs(counts, 0.99)! < 625)
})

t.test('the ring reuses a slot one turn later and the aggregate merges histograms of several sources', async (t) => {
  const start = 1_700_000_000_000 - (1_700_000_000_000 % BUCKET_MS)
  const ring = new TrafficRing()
  ring.record(start, 200, 1, 10, 20, 'proxied')
  ring.record(start + 1, 429, 2, 0, 0, 'rate_limited')
  ring.record(start + 2, 403, -1, 0, 0, 'blocked')
  t.same(ring.stored(start, start + 5).map((bucket) => [bucket.n, bucket.s, bucket.r, bucket.b, bucket.i, bucket.o]), [[3, [0, 1, 0, 2, 0], 1, 1, 10, 20]])
  // Same slot, one ring-turn later: the old counts are gone.
  const later = start + RING_BUCKETS * BUCKET_MS
  ring.record(later, 500, 3, 0, 0, 'upstream_error')
  t.same(ring.stored(start, later + 5).map((bucket) => [bucket.t, bucket.n]), [[later, 1]])
  t.equal(ring.requestsPerSecond(later + BUCKET_MS), 0.1)

  const other = new TrafficRing()
  for (let i = 0; i < 99; i++) other.record(later + 1, 200, 1, 0, 0, 'proxied')
  const points = aggregate([ring.stored(0, later + 5), other.stored(0, later + 5)], 30, 10, later + 5)
  t.equal(points.length, 3)
  const last = points[2]
  t.equal(last.ts, new Date(later).toISOString())
  t.equal(last.requests, 100)
  t.same(last.byStatusClass, { '1xx': 0, '2xx': 99, '3xx': 0, '4xx': 0, '5xx': 1 })
  t.ok(last.p50! < 1.25)
  t.ok(last.p99! < 1.25, '99 of 100 at 1 ms: p99 is fast')
  t.equal(points[0].requests, 0)
  t.equal(points[0].p50, null)
})
