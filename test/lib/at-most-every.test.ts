import t from 'tap'
import { atMostEvery } from '../../lib/at-most-every.js'

t.test('opens the first time, then not again until the interval has passed', async (t) => {
  let now = 1_000
  const gate = atMostEvery(10_000, () => now)
  t.equal(gate(), true)
  now += 9_999
  t.equal(gate(), false)
  now += 1
  t.equal(gate(), true)
  t.equal(gate(), false)
  now += 25_000
  t.equal(gate(), true)
})
