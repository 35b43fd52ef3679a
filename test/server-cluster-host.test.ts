import { performance } from 'node:perf_hooks'
import t from 'tap'
import { Client } from 'undici'
import { adminHeaders, httpRequest, spawnGateway, startUpstream, type SpawnedGateway } from './helper.js'

/**
 * docs/policies.md "Several worker processes", docs/observability.md: with WORKERS=2 and no Redis, the host has one rate
 * limit, /admin/rate-limits reads and resets every worker's counters, and /admin/status answers
 * for the whole host with a per-worker breakdown. Real processes, real sockets; every request on
 * a new connection so that the primary spreads them over both workers.
 */

function listeningPids (gateway: SpawnedGateway): number[] {
  return gateway.stdout.flatMap((line) => line.includes('"worker listening"') ? [JSON.parse(line).pid as number] : [])
}

async function until (condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

interface WorkerEntry { workerId: number, pid: number, routes: number, requests: { total: number, byStatusClass: Record<string, number> }, rateLimited: number, bytesIn: number, bytesOut: number, activeConnections: number }
interface HostStatus {
  requests: { total: number, byStatusClass: Record<string, number> }
  rateLimited: number
  bytesIn: number
  bytesOut: number
  blocked: number
  targets: Array<{ routeId: string, inFlight: number, healthy: boolean }>
  audit: { queueDepth: number, dropped: number }
  workers: WorkerEntry[]
  unresponsiveWorkers: Array<{ workerId: number, pid: number }>
}

async function burst (url: string, count: number): Promise<number[]> {
  return await Promise.all(Array.from({ length: count }, async (_, i) => (await httpRequest(`${url}/limited/${i}`, { reset: true })).statusCode))
}

async function status (url: string): Promise<HostStatus> {
  const response = await httpRequest(`${url}/admin/status`, { headers: adminHeaders, reset: true })
  if (response.statusCode !== 200) throw new Error(`status answered ${response.statusCode}: ${response.body}`)
  return JSON.parse(response.body) as HostStatus
}

const count = (statuses: number[], code: number): number => statuses.filter((status) => status === code).length

t.test('WORKERS=2 without Redis: one host-wide rate limit, reset on every worker, status summed over the workers and not held up by a stopped worker', async (t) => {
  const upstream = await startUpstream(t)
  const gateway = await spawnGateway(t, { WORKERS: '2', LOG_LEVEL: 'info' }, { startTimeoutMs: 60_000 })
  await until(() => listeningPids(gateway).length === 2, 30_000, 'two workers listening')
  const pids = listeningPids(gateway).sort((a, b) => a - b)

  const created = await httpRequest(`${gateway.url}/admin/routes`, {
    method: 'POST',
    headers: { ...adminHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'limited', path: '/limited', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 5, windowMs: 60_000, by: 'ip' } })
  })
  t.equal(created.statusCode, 201)
  const routeId = JSON.parse(created.body).id as string
  // The other worker picks the route up on its configuration poll (1 s; longer on a busy machine).
  await until(async () => (await status(gateway.url)).workers.filter((worker) => worker.routes === 1).length === 2, 15_000, 'both workers to load the route')

  const first = await burst(gateway.url, 20)
  t.equal(count(first, 200), 5, `statuses: ${first.join(' ')}`)
  t.equal(count(first, 200), 5, 'the host admits 5 of 20 (each worker alone admitted 5, 10 in all)')
  t.equal(count(first, 429), 15)

  const afterBurst = await status(gateway.url)
  t.same(afterBurst.workers.map((worker) => worker.pid).sort((a, b) => a - b), pids, 'both workers listed')
  t.same(afterBurst.unresponsiveWorkers, [])
  for (const worker of afterBurst.workers) t.ok(worker.requests.total > 0, `worker ${worker.pid} served part of the burst (${worker.requests.total})`)

  const counters = await httpRequest(`${gateway.url}/admin/rate-limits/127.0.0.1`, { headers: adminHeaders, reset: true })
  t.equal(counters.statusCode, 200)
  t.match(JSON.parse(counters.body).items, [{ routeId, scope: 'ip', limit: 5, current: 5, remaining: 0 }], 'the host\'s counter, whichever worker answers')

  const reset = await httpRequest(`${gateway.url}/admin/rate-limits/127.0.0.1`, { method: 'DELETE', headers: adminHeaders, reset: true })
  t.equal(reset.statusCode, 204)
  const cleared = await httpRequest(`${gateway.url}/admin/rate-limits/127.0.0.1`, { headers: adminHeaders, reset: true })
  t.match(JSON.parse(cleared.body).items, [{ routeId, current: 0, remaining: 5 }])

  const second = await burst(gateway.url, 20)
  t.equal(count(second, 200), 5, 'after DELETE the host admits 5 again: no worker kept its count')
  t.equal(count(second, 429), 15)

  // Every status call answers for the host, whichever worker takes it.
  const answers = [await status(gateway.url), await status(gateway.url), await status(gateway.url), await status(gateway.url)]
  for (const host of answers) {
    t.equal(host.requests.total, 40)
    t.same(host.requests.byStatusClass, { '1xx': 0, '2xx': 10, '3xx': 0, '4xx': 30, '5xx': 0 })
    t.equal(host.rateLimited, 30)
    t.equal(host.workers.length, 2)
    const sum = (pick: (worker: WorkerEntry) => number): number => host.workers.reduce((total, worker) => total + pick(worker), 0)
    t.equal(sum((worker) => worker.requests.total), host.requests.total, 'requests.total is the sum over the workers')
    t.equal(sum((worker) => worker.requests.byStatusClass['4xx']), 30)
    t.equal(sum((worker) => worker.rateLimited), host.rateLimited)
    t.equal(sum((worker) => worker.bytesOut), host.bytesOut)
    t.equal(sum((worker) => worker.bytesIn), host.bytesIn)
    t.match(host.targets, [{ routeId, url: upstream.url, healthy: true, inFlight: 0 }])
    t.equal(host.targets.length, 1, 'one target for the host, not one per worker')
  }
  t.same(answers.map((host) => host.workers.map((worker) => worker.requests.total)), Array(4).fill(answers[0].workers.map((worker) => worker.requests.total)))

  // A stopped worker must not hang the host-wide answer: it is named, the others still count.
  const [stopped, running] = listeningPids(gateway)
  process.kill(stopped, 'SIGSTOP')
  t.teardown(() => { try { process.kill(stopped, 'SIGCONT') } catch {} })

  // Connections handed to the stopped worker wait until SIGCONT; the primary hands it at most
  // one, so most of these four reach the running worker.
  const started = Date.now()
  const calls = Array.from({ length: 4 }, async () => {
    const response = await httpRequest(`${gateway.url}/admin/status`, { headers: adminHeaders, reset: true })
    return { elapsedMs: Date.now() - started, statusCode: response.statusCode, body: JSON.parse(response.body) as HostStatus }
  })
  const resumed = new Promise<void>((resolve) => setTimeout(() => { process.kill(stopped, 'SIGCONT'); resolve() }, 4000))
  const answered = await Promise.all(calls)
  await resumed
  const quick = answered.filter((call) => call.elapsedMs < 3000)
  t.ok(quick.length >= 3, `${quick.length} of 4 answered before the stopped worker resumed`)
  for (const call of quick) {
    t.equal(call.statusCode, 200)
    t.same(call.body.workers.map((worker) => worker.pid), [running])
    t.match(call.body.unresponsiveWorkers, [{ pid: stopped }])
    t.equal(call.body.unresponsiveWorkers.length, 1)
    t.equal(call.body.requests.total, answers[0].workers.find((worker) => worker.pid === running)?.requests.total, 'the totals are the answering workers\' sum')
  }
  // Once resumed, both answer again.
  const after = await status(gateway.url)
  t.equal(after.workers.length, 2)
  t.same(after.unresponsiveWorkers, [])

  // A hung primary: the first hits wait for the 250 ms timeout and fail open, then the worker
  // stops asking for a second (no more waiting), then asks again and limits again.
  const client = new Client(gateway.url, { pipelining: 1 })
  t.teardown(async () => { await client.close() })
  const timed = async (): Promise<{ statusCode: number, ms: number }> => {
    const begun = performance.now()
    const response = await client.request({ method: 'GET', path: '/limited/kept-alive' })
    await response.body.dump()
    return { statusCode: response.statusCode, ms: performance.now() - begun }
  }
  t.equal((await timed()).statusCode, 429, 'the counter is still full from the second burst')
  process.kill(gateway.process.pid as number, 'SIGSTOP')
  const duringHang: Array<{ statusCode: number, ms: number }> = []
  try {
    for (let i = 0; i < 6; i++) duringHang.push(await timed())
  } finally {
    process.kill(gateway.process.pid as number, 'SIGCONT')
  }
  t.same(duringHang.map((call) => call.statusCode), Array(6).fill(200), 'fail open while the primary is hung')
  for (const call of duringHang.slice(0, 3)) t.ok(call.ms >= 240, `one of the first three hits waited for the timeout (${Math.round(call.ms)} ms)`)
  for (const call of duringHang.slice(3)) t.ok(call.ms < 240, `then no more waiting (${Math.round(call.ms)} ms)`)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.equal((await timed()).statusCode, 429, 'the primary is asked again once it answers, and its counter still holds')

  t.equal(await gateway.stop('SIGTERM'), 0)
})
