import t from 'tap'
import { adminHeaders, httpRequest, spawnGateway, startUpstream, type SpawnedGateway } from './helper.js'

/** pid of each worker from the primary's "worker listening" lines, in order of appearance. */
function listeningPids (gateway: SpawnedGateway): number[] {
  return gateway.stdout.flatMap((line) => {
    if (!line.includes('"worker listening"')) return []
    return [JSON.parse(line).pid as number]
  })
}

async function until (condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('WORKERS=2: one token and migration in the primary, two workers share the port and the database; a killed worker is replaced; SIGTERM drains all and exits 0', async (t) => {
  const upstream = await startUpstream(t)
  const gateway = await spawnGateway(t, { WORKERS: '2', ADMIN_TOKEN: undefined, LOG_LEVEL: 'info' })
  await until(() => listeningPids(gateway).length === 2, 30_000, 'two workers listening')
  const [first, second] = listeningPids(gateway)
  t.not(first, second)
  t.not(first, gateway.process.pid)

  const tokenLines = [...gateway.stdout, ...gateway.stderr].filter((line) => line.includes('generated admin token'))
  t.equal(tokenLines.length, 1, 'the token is generated and printed once, by the primary')
  t.equal(JSON.parse(tokenLines[0]).pid, gateway.process.pid)
  const token = /\(shown only now\): (\S+)/.exec(tokenLines[0])?.[1] as string
  const admin = { authorization: `Bearer ${token}` }

  // A route created through one worker is served by both once the other has polled the change.
  const created = await httpRequest(`${gateway.url}/admin/routes`, {
    method: 'POST',
    headers: { ...admin, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }] })
  })
  t.equal(created.statusCode, 201)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const statuses = await Promise.all(Array.from({ length: 20 }, async (_, i) => (await httpRequest(`${gateway.url}/api/${i}`, { reset: true })).statusCode))
  t.same(statuses, Array(20).fill(200), 'every worker routes the new route within 1 s')
  t.equal((await httpRequest(`${gateway.url}/admin/routes`, { headers: adminHeaders })).statusCode, 401)

  process.kill(first, 'SIGKILL')
  await until(() => listeningPids(gateway).length === 3, 30_000, 'a replacement worker')
  const replacement = listeningPids(gateway)[2]
  t.not(replacement, first)
  t.not(replacement, second)
  t.match(gateway.stdout.join('\n'), /worker died: replacing it/)
  const afterKill = await Promise.all(Array.from({ length: 10 }, async (_, i) => (await httpRequest(`${gateway.url}/api/${i}`, { reset: true })).statusCode))
  t.same(afterKill, Array(10).fill(200))

  t.equal(await gateway.stop('SIGTERM'), 0)
  t.equal(alive(second), false, 'worker exited')
  t.equal(alive(replacement), false, 'replacement exited')
  t.equal(gateway.stdout.filter((line) => line.includes('shut down cleanly')).length, 2, 'both workers drained')
})
