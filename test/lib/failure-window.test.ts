import t from 'tap'
import { FailureWindow } from '../../lib/failure-window.js'

t.test('failures count in a window that starts at the first failure and ends a window later', async (t) => {
  let now = 1_000
  const window = new FailureWindow(60_000, () => now)
  t.same(window.current('a'), { failures: 0, msLeft: 60_000 })
  window.record('a')
  now += 20_000
  window.record('a')
  t.same(window.current('a'), { failures: 2, msLeft: 40_000 })
  t.same(window.current('b'), { failures: 0, msLeft: 60_000 }, 'keys are counted apart')
  now += 40_000
  t.same(window.current('a'), { failures: 0, msLeft: 60_000 }, 'the minute is over: the count starts again')
  window.record('a')
  t.same(window.current('a'), { failures: 1, msLeft: 60_000 })
})

t.test('keys whose window ended are swept, so memory follows the recent failures only', async (t) => {
  let now = 0
  const window = new FailureWindow(1_000, () => now)
  for (let i = 0; i < 100; i++) window.record(`10.0.0.${i}`)
  t.equal(window.size, 100)
  now = 1_500
  window.record('10.0.1.1')
  t.equal(window.size, 1, 'the 100 expired keys were dropped on the next failure')
})
