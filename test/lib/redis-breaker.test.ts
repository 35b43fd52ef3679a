import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { RedisBreaker, RedisUnavailableError } from '../../lib/redis-breaker.js'

const timeout = async (): Promise<never> => { throw new Error('Command timed out') }

t.test('opens after `threshold` failures in a row; a success in between resets the count', async (t) => {
  const changes: Array<[boolean, string]> = []
  const breaker = new RedisBreaker({ threshold: 3, probeIntervalMs: 60_000, probe: async () => 'PONG', up: true, onChange: (up, reason) => changes.push([up, reason]) })
  t.teardown(() => breaker.close())
  await t.rejects(breaker.run(timeout), /Command timed out/)
  await t.rejects(breaker.run(timeout), /Command timed out/)
  t.equal(await breaker.run(async () => 'OK'), 'OK')
  t.equal(breaker.consecutiveFailures, 0)
  for (let i = 0; i < 3; i++) await t.rejects(breaker.run(timeout), /Command timed out/)
  t.equal(breaker.up, false)
  t.same(changes, [[false, 'Command timed out']])
  t.equal(breaker.lastError, 'Command timed out')

  let sent = 0
  const refusals = await Promise.allSettled([1, 2, 3].map(async () => await breaker.run(async () => { sent++ })))
  t.equal(sent, 0, 'commands are not sent while open')
  t.equal(breaker.bypassed, 3)
  for (const refusal of refusals) {
    t.equal(refusal.status, 'rejected')
    t.ok((refusal as PromiseRejectedResult).reason instanceof RedisUnavailableError)
    t.equal((refusal as PromiseRejectedResult).reason.message, 'redis unavailable: Command timed out')
  }
})

t.test('a probe finds Redis back; a failing probe keeps it down and records why', async (t) => {
  let answering = false
  let probes = 0
  const breaker = new RedisBreaker({
    threshold: 3,
    probeIntervalMs: 30,
    probe: async () => { probes++; if (!answering) throw new Error('connect ECONNREFUSED') }
  })
  t.teardown(() => breaker.close())
  t.equal(breaker.up, false, 'down until something answers')
  await sleep(100)
  t.ok(probes >= 2, `${probes} probes while down`)
  t.equal(breaker.lastError, 'connect ECONNREFUSED')
  answering = true
  const started = Date.now()
  while (!breaker.up && Date.now() - started < 1000) await sleep(10)
  t.equal(breaker.up, true)
  t.equal(breaker.lastError, null)
  const probesWhenUp = probes
  await sleep(100)
  t.equal(probes, probesWhenUp, 'no probes while up')
})

t.test('markDown and markUp (connection closed / ready) switch at once; close stops probing', async (t) => {
  let probes = 0
  const breaker = new RedisBreaker({ threshold: 3, probeIntervalMs: 20, probe: async () => { probes++; throw new Error('still down') }, up: true })
  const since = breaker.since
  await sleep(5)
  breaker.markDown('connection closed')
  t.equal(breaker.up, false)
  t.ok(breaker.since > since)
  t.equal(breaker.lastError, 'connection closed')
  breaker.markUp()
  t.equal(breaker.up, true)
  breaker.markDown('connection closed')
  breaker.close()
  const after = probes
  await sleep(80)
  t.equal(probes, after, 'no probe after close')
  breaker.markUp()
  t.equal(breaker.up, false, 'a closed breaker stays as it was')
})
