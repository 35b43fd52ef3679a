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

t.test('bans: a key that does not fit is refused for banMs without counting, whatever the window says', async (t) => {
  const store = new MemoryWindowStore()
  t.teardown(() => store.close())
  const now = 1_000_000
  t.equal(store.hit('k', 1, 1000, now, 5000).allowed, true)
  t.match(store.hit('k', 1, 1000, now + 1, 5000), { allowed: false, banned: true, retryAfterSeconds: 5, resetSeconds: 5, remaining: 0 })
  t.equal(store.banRemainingMs('k', now + 1), 5000)
  // Two windows later the window alone would admit; the ban does not.
  t.match(store.hit('k', 1, 1000, now + 2500, 5000), { allowed: false, banned: true, retryAfterSeconds: 3 })
  t.equal(store.hit('other', 1, 1000, now + 2500, 5000).allowed, true, 'other keys are unaffected')
  t.equal(store.banRemainingMs('k', now + 5001), 0)
  t.match(store.hit('k', 1, 1000, now + 5001, 5000), { allowed: true, banned: false }, 'the ban ends by itself')
  t.equal(store.bannedKeys, 0, 'an ended ban is dropped when its key is next used')

  t.match(store.hit('plain', 1, 1000, now, 0), { allowed: true })
  t.match(store.hit('plain', 1, 1000, now, 0), { allowed: false, banned: false }, 'banMs 0: no ban')
  t.equal(store.bannedKeys, 0)
})

t.test('bans are lifted and bounded by maxKeys (oldest first)', async (t) => {
  const store = new MemoryWindowStore({ maxKeys: 4 })
  t.teardown(() => store.close())
  const now = 2_000_000
  for (const key of ['a', 'b']) {
    store.hit(key, 1, 1000, now, 1000)
    store.hit(key, 1, 1000, now, 1000)
  }
  t.equal(store.bannedKeys, 2)
  t.equal(store.liftBans(['a', 'missing'], now), 1)
  t.equal(store.banRemainingMs('a', now), 0)
  t.equal(store.hit('a', 1, 1000, now, 1000).banned, true, 'lifted, but the window still refuses (and bans again)')
  t.equal(store.liftBans(['b'], now + 2000), 0, 'an ended ban is not counted as lifted')

  for (const key of ['c', 'd', 'e', 'f', 'g']) {
    store.hit(key, 1, 60_000, now, 60_000)
    store.hit(key, 1, 60_000, now, 60_000)
  }
  t.ok(store.bannedKeys <= 4, `${store.bannedKeys} bans kept (maxKeys 4)`)
  t.equal(store.banRemainingMs('g', now), 60_000, 'the newest ban is kept')
  t.equal(store.banRemainingMs('a', now), 0, 'the oldest was dropped')
})

t.test('ended bans are swept in the background even if their key is never used again', async (t) => {
  const store = new MemoryWindowStore({ sweepIntervalMs: 10 })
  t.teardown(() => store.close())
  store.hit('k', 1, 60_000, Date.now(), 50)
  store.hit('k', 1, 60_000, Date.now(), 50)
  t.equal(store.bannedKeys, 1)
  const started = Date.now()
  while (store.bannedKeys > 0 && Date.now() - started < 2000) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(store.bannedKeys, 0, `swept ${Date.now() - started} ms after a 50 ms ban`)
})
