import t from 'tap'
import { type Balanceable, createBalancer, LeastConnections, SmoothWeightedRoundRobin } from '../../lib/balancer.js'

/** A target as the balancer sees it: a name, an in-flight count and a switch. */
class Node implements Balanceable {
  inFlight = 0
  up = true
  constructor (readonly name: string) {}
  selectable (): boolean { return this.up }
}

function nodes (...names: string[]): Node[] {
  return names.map((name) => new Node(name))
}

function sequence (pick: () => Node | null, count: number): string {
  let out = ''
  for (let i = 0; i < count; i++) out += pick()?.name ?? '-'
  return out
}

t.test('smooth weighted round-robin gives nginx\'s sequence for weights 5,1,1', async (t) => {
  const [a, b, c] = nodes('a', 'b', 'c')
  const balancer = new SmoothWeightedRoundRobin([{ target: a, weight: 5 }, { target: b, weight: 1 }, { target: c, weight: 1 }])
  t.equal(sequence(() => balancer.pick(0), 14), 'aabacaa' + 'aabacaa')
})

t.test('smooth weighted round-robin interleaves 3:1 without bursts and 2:1 exactly', async (t) => {
  const [a, b] = nodes('a', 'b')
  const threeToOne = new SmoothWeightedRoundRobin([{ target: a, weight: 3 }, { target: b, weight: 1 }])
  t.equal(sequence(() => threeToOne.pick(0), 8), 'aaba' + 'aaba')
  const twoToOne = new SmoothWeightedRoundRobin([{ target: a, weight: 2 }, { target: b, weight: 1 }])
  t.equal(sequence(() => twoToOne.pick(0), 6), 'aba' + 'aba')
})

t.test('round-robin over equal weights alternates and splits 1:1 exactly', async (t) => {
  const [a, b] = nodes('a', 'b')
  const balancer = createBalancer('round-robin', [{ target: a, weight: 1 }, { target: b, weight: 1 }])
  t.equal(balancer.algorithm, 'round-robin')
  const picks = sequence(() => balancer.pick(0), 1000)
  t.equal(picks.slice(0, 6), 'ababab')
  t.equal([...picks].filter((name) => name === 'a').length, 500)
})

t.test('round-robin skips targets that are not selectable or excluded, and answers null when none is left', async (t) => {
  const [a, b, c] = nodes('a', 'b', 'c')
  const balancer = new SmoothWeightedRoundRobin([{ target: a, weight: 1 }, { target: b, weight: 1 }, { target: c, weight: 1 }])
  b.up = false
  t.equal(sequence(() => balancer.pick(0), 4), 'acac')
  t.equal(balancer.pick(0, new Set([a]))?.name, 'c')
  t.equal(balancer.pick(0, new Set([a, c])), null)
  a.up = false
  c.up = false
  t.equal(balancer.pick(0), null)
})

t.test('a target that comes back is not given a burst to catch up', async (t) => {
  const [a, b] = nodes('a', 'b')
  const balancer = new SmoothWeightedRoundRobin([{ target: a, weight: 1 }, { target: b, weight: 1 }])
  b.up = false
  sequence(() => balancer.pick(0), 10)
  b.up = true
  t.equal(sequence(() => balancer.pick(0), 6), 'ababab')
})

t.test('least-connections prefers the target with fewer requests in flight', async (t) => {
  const [a, b, c] = nodes('a', 'b', 'c')
  const balancer = createBalancer('least-connections', [{ target: a, weight: 1 }, { target: b, weight: 1 }, { target: c, weight: 1 }])
  t.equal(balancer.algorithm, 'least-connections')
  a.inFlight = 4
  b.inFlight = 1
  c.inFlight = 2
  t.equal(balancer.pick(0)?.name, 'b')
  t.equal(balancer.pick(0, new Set([b]))?.name, 'c')
  b.up = false
  t.equal(balancer.pick(0)?.name, 'c')
})

t.test('least-connections weighs in-flight counts by weight', async (t) => {
  const [a, b] = nodes('a', 'b')
  const balancer = new LeastConnections([{ target: a, weight: 3 }, { target: b, weight: 1 }])
  a.inFlight = 2 // 2/3 < 1/1
  b.inFlight = 1
  t.equal(balancer.pick(0)?.name, 'a')
  a.inFlight = 4 // 4/3 > 1/1
  t.equal(balancer.pick(0)?.name, 'b')
})

t.test('least-connections breaks ties by weight, then round-robin', async (t) => {
  const [a, b, c] = nodes('a', 'b', 'c')
  const equal = new LeastConnections([{ target: a, weight: 1 }, { target: b, weight: 1 }, { target: c, weight: 1 }])
  t.equal(sequence(() => equal.pick(0), 6), 'abcabc', 'equal weights and counts take turns')

  const [x, y] = nodes('x', 'y')
  const weighted = new LeastConnections([{ target: x, weight: 1 }, { target: y, weight: 3 }])
  t.equal(sequence(() => weighted.pick(0), 8), 'yxyy' + 'yxyy', 'the heavier target gets its share of ties, smoothly')

  const [p, q, r] = nodes('p', 'q', 'r')
  const partial = new LeastConnections([{ target: p, weight: 1 }, { target: q, weight: 1 }, { target: r, weight: 1 }])
  p.inFlight = 1
  t.equal(sequence(() => partial.pick(0), 4), 'qrqr', 'only the tied least-loaded targets take turns')
})

t.test('least-connections answers null when every target is excluded or down', async (t) => {
  const [a, b] = nodes('a', 'b')
  const balancer = new LeastConnections([{ target: a, weight: 1 }, { target: b, weight: 1 }])
  t.equal(balancer.pick(0, new Set([a, b])), null)
  a.up = false
  b.up = false
  t.equal(balancer.pick(0), null)
})

t.test('the balancer passes the clock to selectable()', async (t) => {
  const seen: number[] = []
  const timed: Balanceable = { inFlight: 0, selectable (now) { seen.push(now); return now >= 100 } }
  const balancer = new SmoothWeightedRoundRobin([{ target: timed, weight: 1 }])
  t.equal(balancer.pick(99), null)
  t.equal(balancer.pick(100), timed)
  t.same(seen, [99, 100])
})
