import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { Pool } from 'undici'
import { buildTestApp, createRoute, freePort, httpRequest, spawnGateway, startUpstream, tempDir, type SpawnedGateway, type TestContext } from '../helper.js'

/**
 * A rolling restart behind a real HAProxy (README "Behind a load balancer"): two gateway processes
 * on one SQLite file, deploy/haproxy.cfg with this test's ports, steady traffic through HAProxy
 * while each instance in turn gets SIGTERM (SHUTDOWN_DELAY_MS: /ready 503 until HAProxy has taken
 * it out), exits, starts again and is taken back in. Not one request may fail.
 */

const haproxyInstalled = spawnSync('haproxy', ['-v']).status === 0
const SHUTDOWN_DELAY_MS = '1500'

/** deploy/haproxy.cfg with the test's ports and instances, and checks every 200 ms instead of 2 s. */
function haproxyConfig (frontendPort: number, statsPort: number, instancePorts: number[]): string {
  let config = readFileSync(new URL('../../deploy/haproxy.cfg', import.meta.url), 'utf8')
  const replace = (pattern: RegExp, replacement: string): void => {
    if (!pattern.test(config)) throw new Error(`deploy/haproxy.cfg no longer has ${pattern}`)
    config = config.replace(pattern, replacement)
  }
  replace(/^(\s*)bind :80$/m, `$1bind 127.0.0.1:${frontendPort}`)
  replace(/^(\s*)bind 127\.0\.0\.1:8404$/m, `$1bind 127.0.0.1:${statsPort}`)
  replace(/^(\s*)log stdout .*$/m, '$1log stderr format raw local0 warning')
  replace(/^(\s*default-server) inter 2s fastinter 500ms (.*)$/m, '$1 inter 200ms fastinter 100ms $2')
  replace(/^(\s*)server gatehouse1 .*\n\s*server gatehouse2 .*$/m,
    instancePorts.map((port, i) => `$1server gatehouse${i + 1} 127.0.0.1:${port} check`).join('\n'))
  // Which instance answered, so the test can see traffic move.
  replace(/^(\s*)balance leastconn$/m, '$1balance leastconn\n$1http-response set-header X-Served-By %s')
  return config
}

async function startHaproxy (t: TestContext, configFile: string): Promise<{ output: string[], exited: boolean }> {
  const check = spawnSync('haproxy', ['-c', '-q', '-f', configFile], { encoding: 'utf8' })
  if (check.status !== 0) throw new Error(`haproxy refused the config: ${check.stderr}`)
  const child = spawn('haproxy', ['-db', '-f', configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
  const output: string[] = []
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()))
  let exitCode: number | null | undefined
  const exited = new Promise((resolve) => child.on('exit', (code) => { exitCode = code; resolve(code) }))
  t.teardown(async () => {
    child.kill('SIGKILL')
    await exited
  })
  return { output, get exited () { return exitCode !== undefined } }
}

/** Each instance's state as HAProxy's stats page tells it: "UP", "DOWN", "UP 1/2" … */
async function serverStates (statsPort: number): Promise<Record<string, string>> {
  const response = await httpRequest(`http://127.0.0.1:${statsPort}/stats;csv`)
  const [header, ...rows] = response.body.trim().split('\n')
  const columns = header.replace(/^# /, '').split(',')
  const name = columns.indexOf('svname')
  const status = columns.indexOf('status')
  const states: Record<string, string> = {}
  for (const row of rows) {
    const fields = row.split(',')
    if (fields[0] === 'gatehouse' && /^gatehouse\d+$/.test(fields[name])) states[fields[name]] = fields[status]
  }
  lastSeen = JSON.stringify(states)
  return states
}

/** What HAProxy said last, for the message of a timed-out wait. */
let lastSeen = ''

async function waitFor (what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last seen: ${lastSeen}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

t.test('a rolling restart of two instances behind HAProxy loses no request', { skip: !haproxyInstalled && process.env.GATEHOUSE_REQUIRE_SERVICES !== '1' ? 'haproxy is not installed (apt-get install haproxy)' : false }, async (t) => {
  if (!haproxyInstalled) throw new Error('haproxy required but not installed')
  const upstream = await startUpstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`upstream saw ${req.url}`)
  })
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'shared.db')}`
  const ports = [await freePort(), await freePort()]
  const env = (port: number): Record<string, string> => ({ PORT: String(port), DATABASE_URL: databaseUrl, SHUTDOWN_DELAY_MS, TRUST_PROXY: '127.0.0.1' })

  const startedAt = Date.now()
  const mark = (what: string): void => { t.comment(`${Date.now() - startedAt} ms: ${what}`) }
  // Migrated and given its route here, so both instances can start at once (each would migrate).
  const setup = await buildTestApp(t, { databaseUrl })
  await createRoute(setup, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }] })
  await setup.close()
  const instances: SpawnedGateway[] = await Promise.all(ports.map(async (port) => await spawnGateway(t, env(port))))
  mark('both instances')
  for (const instance of instances) t.equal((await httpRequest(`${instance.url}/api/ping`)).statusCode, 200, 'the instance serves the route')

  const frontendPort = await freePort()
  const statsPort = await freePort()
  const configFile = path.join(tempDir(t), 'haproxy.cfg')
  writeFileSync(configFile, haproxyConfig(frontendPort, statsPort, ports))
  const haproxy = await startHaproxy(t, configFile)
  const allUp = async (): Promise<boolean> => {
    if (haproxy.exited) throw new Error(`haproxy exited: ${haproxy.output.join('')}`)
    const states = await serverStates(statsPort).catch((err: Error) => {
      lastSeen = `${err.message}; haproxy: ${haproxy.output.join('')}`
      return {} as Record<string, string>
    })
    return states.gatehouse1 === 'UP' && states.gatehouse2 === 'UP'
  }
  await waitFor('HAProxy to see both instances UP', allUp)
  mark('haproxy up')

  // Steady traffic: 4 clients on kept-alive connections to HAProxy, one request every ~10 ms each.
  const pool = new Pool(`http://127.0.0.1:${frontendPort}`, { connections: 4 })
  t.teardown(() => pool.destroy())
  const servedBy: Record<string, number> = {}
  const failures: string[] = []
  let sent = 0
  let running = true
  const client = async (id: number): Promise<void> => {
    while (running) {
      const path = `/api/c${id}/${sent++}`
      try {
        const response = await pool.request({ method: 'GET', path })
        const body = await response.body.text()
        const server = String(response.headers['x-served-by'])
        if (response.statusCode !== 200 || body !== `upstream saw ${path}`) failures.push(`${path}: ${response.statusCode} from ${server}: ${body}`)
        else servedBy[server] = (servedBy[server] ?? 0) + 1
      } catch (err) {
        failures.push(`${path}: ${(err as Error).message}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  const clients = Promise.all([0, 1, 2, 3].map(client))
  const served = (server: string): number => servedBy[server] ?? 0
  await waitFor('traffic on both instances', () => served('gatehouse1') > 20 && served('gatehouse2') > 20)

  for (const i of [0, 1]) {
    const name = `gatehouse${i + 1}`
    let exited = false
    const stopping = instances[i].stop('SIGTERM').finally(() => { exited = true })
    // /ready answers 503 at once: HAProxy takes the instance out while it still serves.
    await waitFor(`HAProxy to mark ${name} DOWN`, async () => (await serverStates(statsPort))[name] === 'DOWN', 5000)
    t.equal(exited, false, `HAProxy took ${name} out on its /ready 503, before its listener closed`)
    mark(`${name} down`)
    t.equal(await stopping, 0, `${name} drained and exited 0`)
    mark(`${name} exited`)
    const before = served(name)
    instances[i] = await spawnGateway(t, env(ports[i]))
    mark(`${name} restarted`)
    await waitFor(`HAProxy to see ${name} UP again`, allUp)
    await waitFor(`traffic on the restarted ${name}`, () => served(name) > before + 20)
  }

  running = false
  await clients
  t.same(failures, [], 'no request failed')
  t.ok(served('gatehouse1') + served('gatehouse2') > 200, `requests served: ${JSON.stringify(servedBy)}`)
  t.notMatch(haproxy.output.join(''), /ALERT/, 'HAProxy reported no alert')
})
