import type { ServerResponse } from 'node:http'
import t, { type Test } from 'tap'
import { adminHeaders, createRoute, failOnUnhandledRejections, httpRequest, startGateway, startUpstream, type Upstream } from '../helper.js'

failOnUnhandledRejections(t)

/** An upstream that answers its own name, so the client sees which target served it. */
async function named (t: Test, name: string): Promise<Upstream> {
  return await startUpstream(t, (_req, res) => { res.end(name) })
}

async function names (url: string, count: number): Promise<string> {
  let out = ''
  for (let i = 0; i < count; i++) out += (await httpRequest(url)).body
  return out
}

function tally (served: string): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const name of served) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

t.test('round-robin over real sockets: exact smooth sequence and exact 1:1 and 3:1 splits', async (t) => {
  const a = await named(t, 'a')
  const b = await named(t, 'b')
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'equal', path: '/equal', targets: [{ url: a.url, weight: 1 }, { url: b.url, weight: 1 }] })
  await createRoute(app, { name: 'heavy', path: '/heavy', targets: [{ url: a.url, weight: 3 }, { url: b.url, weight: 1 }] })
  await createRoute(app, { name: 'smooth', path: '/smooth', targets: [{ url: a.url, weight: 5 }, { url: b.url, weight: 1 }] })

  const equal = await names(`${url}/equal`, 100)
  t.equal(equal.slice(0, 6), 'ababab')
  t.same(tally(equal), { a: 50, b: 50 })

  const heavy = await names(`${url}/heavy`, 200)
  t.equal(heavy.slice(0, 8), 'aaba' + 'aaba', 'no burst of three to the heavy target')
  t.same(tally(heavy), { a: 150, b: 50 })

  t.equal(await names(`${url}/smooth`, 12), 'aaabaa' + 'aaabaa', 'nginx order for 5:1')
})

t.test('concurrent traffic keeps the 3:1 split within 5 %', async (t) => {
  const a = await named(t, 'a')
  const b = await named(t, 'b')
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'heavy', path: '/', targets: [{ url: a.url, weight: 3 }, { url: b.url, weight: 1 }] })
  let served = ''
  for (let batch = 0; batch < 20; batch++) {
    const bodies = await Promise.all(Array.from({ length: 20 }, async () => (await httpRequest(`${url}/x`)).body))
    served += bodies.join('')
  }
  const counts = tally(served)
  t.equal(counts.a + counts.b, 400)
  t.ok(Math.abs(counts.a / 400 - 0.75) <= 0.05, `a served ${counts.a} of 400`)
})

t.test('least-connections sends new requests to the idle target while the other is busy', async (t) => {
  const held: ServerResponse[] = []
  const slow = await startUpstream(t, (req, res) => { if (req.url === '/held') held.push(res); else res.end('s') })
  const fast = await named(t, 'f')
  const { app, url } = await startGateway(t)
  await createRoute(app, {
    name: 'lc',
    path: '/',
    loadBalancing: 'least-connections',
    targets: [{ url: slow.url, weight: 1 }, { url: fast.url, weight: 1 }]
  })

  const pending = httpRequest(`${url}/held`) // all idle: the tie goes to the first target
  await waitFor(() => held.length === 1)
  t.equal(app.upstreams.target(slow.url)?.inFlight, 1)
  t.equal(await names(`${url}/x`, 6), 'ffffff')
  t.equal(slow.requests.length, 1)

  held[0].end('s')
  t.equal((await pending).body, 's')
  await waitFor(() => app.upstreams.target(slow.url)?.inFlight === 0)
  const turns = await names(`${url}/x`, 4)
  t.ok(turns === 'sfsf' || turns === 'fsfs', `both idle again: ties take turns (${turns})`)
})

t.test('target state survives a route edit that keeps the URL; round-robin state survives an edit that keeps the targets', async (t) => {
  const held: ServerResponse[] = []
  const a = await startUpstream(t, (req, res) => { if (req.url === '/hold') held.push(res); else res.end('a') })
  const b = await named(t, 'b')
  const { app, url } = await startGateway(t)
  const route = await createRoute(app, { name: 'edit', path: '/', targets: [{ url: a.url, weight: 2 }, { url: b.url, weight: 1 }] })

  const before = app.upstreams.target(a.url)
  const pending = httpRequest(`${url}/hold`) // 1st pick: a
  await waitFor(() => held.length === 1)

  const patched = await app.inject({ method: 'PATCH', url: `/admin/routes/${route.id}`, headers: adminHeaders, payload: { timeoutMs: 5000 } })
  t.equal(patched.statusCode, 200)
  t.equal(app.upstreams.target(a.url), before, 'the same Target object')
  t.equal(before?.inFlight, 1, 'in-flight count kept across the edit')
  t.equal(await names(`${url}/x`, 2), 'ba', 'the smooth sequence continues (a b a …) rather than restarting')

  const reweighted = await app.inject({ method: 'PATCH', url: `/admin/routes/${route.id}`, headers: adminHeaders, payload: { targets: [{ url: a.url, weight: 1 }, { url: b.url, weight: 3 }] } })
  t.equal(reweighted.statusCode, 200)
  t.equal(app.upstreams.target(a.url), before, 'same URL, same state after a weight change')
  t.equal(await names(`${url}/x`, 4), 'bab' + 'b', 'new weights: a fresh balancer')

  held[0].end('a')
  await pending
  await waitFor(() => before?.inFlight === 0)

  const removed = await app.inject({ method: 'PATCH', url: `/admin/routes/${route.id}`, headers: adminHeaders, payload: { targets: [{ url: b.url, weight: 1 }] } })
  t.equal(removed.statusCode, 200)
  t.equal(app.upstreams.target(a.url), undefined, 'a URL no route uses is forgotten')
})

t.test('targets() lists each URL once however many routes share it, with plain state fields', async (t) => {
  const a = await named(t, 'a')
  const { app } = await startGateway(t)
  await createRoute(app, { name: 'one', path: '/one', targets: [{ url: a.url, weight: 1 }] })
  await createRoute(app, { name: 'two', path: '/two', targets: [{ url: a.url, weight: 4 }] })
  const targets = [...app.upstreams.targets()]
  t.equal(targets.length, 1)
  t.same(JSON.parse(JSON.stringify(targets[0])), {
    url: a.url,
    healthy: true,
    inFlight: 0,
    consecutiveFailures: 0,
    ejectedUntil: null,
    halfOpen: false,
    ejections: 0,
    activeHealthy: null
  })
})

async function waitFor (condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
