/**
 * A latency histogram with fixed logarithmic bins, the same on every instance, so histograms
 * from several instances (and several 10-second buckets) merge by adding counts and the
 * percentiles of the merge are the percentiles of all the requests together — unlike
 * averaging each instance's own p99 (docs/dashboard.md "How the numbers are made").
 *
 * Bin 0 holds durations up to 0.01 ms; bin i holds (0.01·1.25^(i-1), 0.01·1.25^i] ms; the last
 * bin holds everything above ≈ 75 s. A percentile is reported as its bin's upper bound: at most
 * 25 % above the true value, never below it.
 */
export const SMALLEST_BOUND_MS = 0.01
export const GROWTH = 1.25
/** Finite bins 0…71, then one overflow bin. */
export const BIN_COUNT = 73
const LAST_FINITE = BIN_COUNT - 2
const LOG_GROWTH = Math.log(GROWTH)

export function binOf (durationMs: number): number {
  if (durationMs <= SMALLEST_BOUND_MS) return 0
  const bin = Math.ceil(Math.log(durationMs / SMALLEST_BOUND_MS) / LOG_GROWTH)
  return bin > LAST_FINITE ? BIN_COUNT - 1 : bin
}

/** The upper bound of a bin in ms (the overflow bin reports the last finite bound). */
export function upperBoundMs (bin: number): number {
  return SMALLEST_BOUND_MS * GROWTH ** Math.min(bin, LAST_FINITE)
}

/**
 * The value at quantile q (0 < q ≤ 1) of a histogram given as counts per bin; null when empty.
 * Rounded to the microsecond.
 */
export function quantileMs (counts: ArrayLike<number>, q: number): number | null {
  let total = 0
  for (let i = 0; i < counts.length; i++) total += counts[i]
  if (total === 0) return null
  const rank = Math.ceil(q * total)
  let seen = 0
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]
    if (seen >= rank) return Math.round(upperBoundMs(i) * 1000) / 1000
  }
  return Math.round(upperBoundMs(counts.length - 1) * 1000) / 1000
}
