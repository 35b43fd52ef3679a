import t from 'tap'
import { decide, MemoryWindowStore } from '../../lib/sliding-window.js'

const W = 10_000
const at = (windowIndex: number, fraction: number): number => windowIndex * W + fraction * W

t.test('admits exactly max requests in a fresh window, refusing the next', async (t) => {
  const store = new MemoryWindowStore()
  t.teardown(() => store.close())
  const now = at(100, 0.1)
  const remaining: number[] = []
  for (let i = 0; i < 5; i++) {
    const d = store.hit('k', 5, W, now)
    t.equal(d.allowed, true)
    remaining.push(d.remaining)
  }
  t.same(remaining, [4, 3, 2, 1, 0])
  const refused = store.hit('k', 5, W, now)
  t.equal(refused.allowed, false)
  t.equal(refused.remaining, 0)
  t.equal(refused.resetSeconds, 9, 'seconds until the fixed window ends')
  t.equal(refused.retryAfterSeconds, 11, 'the 5 requests must slide out far enough: 9 s + 10 s × (1 − 4/5)')
})

t.test('a burst straddling a window boundary passes max plus the slid-out share, not twice max', async (t) => {
  const store = new MemoryWindowStore()
  t.teardown(() => store.close())
  let admitted = 0
  for (let i = 0; i < 10; i++) if (store.hit('k', 10, W, at(7, 0.99)).allowed) admitted++
  t.equal(admitted, 10)
  // 1 % into the next window: 10 × 0.99 = 9.9 still counted, so nothing fits.
  let next = 0
  for (let i = 0; i < 10; i++) if (store.hit('k', 10, W, at(8, 0.01)).allowed) next++
  t.equal(next, 0)
  // Half-way through: 5 of the previous window's requests have slid out.
  for (let i = 0; i < 10; i++) if (store.hit('k', 10, W, at(8, 0.5)).allowed) next++
  t.equal(next, 5)
  // Two windows later everything has slid out.
  let later = 0
  for (let i = 0; i < 20; i++) if (store.hit('k', 10, W, at(10, 0.01)).allowed) later++
  t.equal(later, 10)
})

t.test('decide computes retry-after for a previous-window backlog', async (t) => {
  // previous 10, current 0, max 10, 20 % in: 8 counted, 2 remain.
  const d = decide(10, 0, 2000, W, 10, true)
  t.equal(d.remaining, 2)
  t.equal(d.resetSeconds, 8)
  // previous 10, current 2 at 20 %: 10 counted; room for one more once 1 slid out (at 30 %).
  const refused = decide(10, 2, 2000, W, 10, false)
  t.equal(refused.retryAfterSeconds, 1)
  t.equal(decide(0, 1, 0, W, 1, false).retryAfterSeconds, 20, 'max 1: the one request slides out after two windows')
})

t.test('a changed window size starts the key afresh', async (t) => {
  const store = new MemoryWindowStore()
  t.teardown(() => store.close())
  store.hit('k', 1, W, at(3, 0.1))
  t.equal(store.hit('k', 1, W, at(3, 0.1)).allowed, false)
  t.equal(store.hit('k', 1, W * 2, at(3, 0.1)).allowed, true)
})

t.test('memory is bounded: keys unused while maxKeys / 2 others were used are dropped; used ones survive', async (t) => {
  const store = new MemoryWindowStore({ maxKeys: 4 })
  t.teardown(() => store.close())
  const now = at(1, 0.5)
  store.hit('a', 1, W, now)
  store.hit('b', 1, W, now)
  store.hit('c', 1, W, now) // a and b become the older generation
  store.hit('a', 1, W, now) // refused, and a moves back to the recent generation
  store.hit('d', 1, W, now) // c and a become older; b, untouched, is dropped
  t.equal(store.size, 3)
  t.equal(store.peek('b', 1, W, now), null)
  t.equal(store.peek('a', 1, W, now)?.remaining, 0)
  t.equal(store.hit('a', 1, W, now).allowed, false, 'a recently used key keeps its count')
  for (let i = 0; i < 1000; i++) store.hit(`k${i}`, 1, W, now)
  t.ok(store.size <= 4, `size stays within maxKeys: ${store.size}`)
})

t.test('sweep drops keys whose windows have slid out', async (t) => {
  const store = new MemoryWindowStore()
  t.teardown(() => store.close())
  store.hit('old', 5, W, at(1, 0.5))
  store.hit('recent', 5, W, at(2, 0.5))
  t.equal(store.sweep(at(3, 0.1)), 1)
  t.equal(store.size, 1)
  t.equal(store.peek('recent', 5, W, at(3, 0.1))?.remaining, 4, '1 × 0.9 of the previous window still counts')
})

t.test('sweepStep sweeps a bounded slice at a time and eventually everything', async (t) => {
  const store = new MemoryWindowStore()
  t.teardown(() => store.close())
  for (let i = 0; i < 100; i++) store.hit(`k${i}`, 5, W, at(1, 0.5))
  store.hit('live', 5, W, at(3, 0.5))
  const later = at(3, 0.6)
  let removed = 0
  const steps: number[] = []
  for (let i = 0; i < 20 && store.size > 1; i++) {
    const step = store.sweepStep(later, 30)
    t.ok(step <= 30, `a step removes at most its budget (${step})`)
    removed += step
    steps.push(step)
  }
  t.equal(removed, 100)
  t.equal(store.size, 1)
  t.equal(store.peek('live', 5, W, later)?.remaining, 4)
})
