import { existsSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs'
import path from 'node:path'
import { Writable } from 'node:stream'
import t from 'tap'
import { adminHeaders, createRoute, httpRequest, spawnGateway, startGateway, startUpstream, tempDir } from '../helper.js'

const readLines = (file: string): any[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line))
/** The file writer writes once per event-loop turn. */
const settle = async (ms = 30): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

async function until (check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await settle(25)
  }
}

t.test('the file gets the stdout access-log lines, request id, trace id, route, consumer, bytes and duration included', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'access.log')
  const stdout: any[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString('utf8').split('\n')) if (text !== '') stdout.push(JSON.parse(text))
      callback()
    }
  })
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { env: { ACCESS_LOG_FILE: file }, build: { logger: { level: 'info', stream } } })
  await createRoute(app, { name: 'files', path: '/files', targets: [{ url: upstream.url, weight: 1 }] })
  t.equal((await httpRequest(`${url}/files/a`, { method: 'POST', body: 'hello', headers: { 'x-request-id': 'file-1' } })).statusCode, 200)
  t.equal((await httpRequest(`${url}/nowhere`, { headers: { 'x-request-id': 'file-2' } })).statusCode, 404)
  t.equal((await httpRequest(`${url}/admin/status`, { headers: { ...adminHeaders, 'x-request-id': 'file-3' } })).statusCode, 200)
  await settle()

  const lines = readLines(file)
  for (const id of ['file-1', 'file-2', 'file-3']) {
    const inFile = lines.find((line) => line.reqId === id)
    const onStdout = stdout.find((line) => line.reqId === id && line.msg === 'request completed')
    t.ok(inFile, `${id} in the file`)
    const { time: _a, ...fileFields } = inFile
    const { time: _b, ...stdoutFields } = onStdout
    t.same(fileFields, stdoutFields, `${id}: the same line as on stdout`)
  }
  t.match(lines.find((line) => line.reqId === 'file-1'), {
    level: 30, msg: 'request completed', route: 'files', method: 'POST', path: '/files/a', status: 200, outcome: 'proxied',
    traceId: /^[0-9a-f]{32}$/, consumer: null, bytesIn: 5, bytesOut: Number, durationMs: Number, pid: process.pid
  })
})

t.test('size rotation keeps ACCESS_LOG_KEEP files, none over ACCESS_LOG_ROTATE_BYTES', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'access.log')
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { env: { ACCESS_LOG_FILE: file, ACCESS_LOG_ROTATE_BYTES: '1500', ACCESS_LOG_KEEP: '2' } })
  await createRoute(app, { name: 'rot', path: '/rot', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 40; i++) await httpRequest(`${url}/rot/${i}`, { headers: { 'x-request-id': `rot-${i}` } })
  await settle()

  t.same(readdirSync(dir).filter((name) => name.startsWith('access.log')).sort(), ['access.log', 'access.log.1', 'access.log.2'], 'two rotated files kept, older ones deleted')
  for (const name of ['access.log', 'access.log.1', 'access.log.2']) t.ok(statSync(path.join(dir, name)).size <= 1500, `${name} within the rotation size`)
  const kept = [...readLines(`${file}.2`), ...readLines(`${file}.1`), ...readLines(file)].map((line) => line.reqId)
  t.equal(kept.at(-1), 'rot-39', 'the newest line is in PATH')
  const first = Number(kept[0].slice(4))
  t.same(kept, Array.from({ length: 40 - first }, (_v, i) => `rot-${first + i}`), 'no line lost or reordered across rotations')
})

t.test('SIGHUP reopens PATH after an external move (logrotate)', async (t) => {
  // The default rotation size: no size rotation may move the file under the test.
  const file = path.join(tempDir(t), 'access.log')
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { env: { ACCESS_LOG_FILE: file } })
  await createRoute(app, { name: 'hup', path: '/rot', targets: [{ url: upstream.url, weight: 1 }] })
  await httpRequest(`${url}/rot/first`, { headers: { 'x-request-id': 'first' } })
  const ids = (name: string): string[] => readLines(name).map((line) => line.reqId).filter((id) => ['first', 'before-hup', 'after-hup'].includes(id))
  await until(() => existsSync(file) && ids(file).length === 1, 'the first line')

  // logrotate-style: the file is moved away, then SIGHUP.
  renameSync(file, `${file}.moved`)
  await httpRequest(`${url}/rot/before-hup`, { headers: { 'x-request-id': 'before-hup' } })
  await until(() => ids(`${file}.moved`).length === 2, 'the line written before SIGHUP')
  process.kill(process.pid, 'SIGHUP')
  await settle(100)
  await httpRequest(`${url}/rot/after-hup`, { headers: { 'x-request-id': 'after-hup' } })
  await until(() => existsSync(file), 'a new file at PATH')
  await settle()
  t.same(ids(`${file}.moved`), ['first', 'before-hup'], 'before SIGHUP: still the moved file')
  t.same(ids(file), ['after-hup'], 'after SIGHUP: a new file at PATH')
})

t.test('bad access-log settings are refused at start', async (t) => {
  const { loadConfig } = await import('../../plugins/config.js')
  t.throws(() => loadConfig({ ACCESS_LOG_ROTATE_BYTES: '-1' }), /ACCESS_LOG_ROTATE_BYTES/)
  t.throws(() => loadConfig({ ACCESS_LOG_KEEP: '0' }), /ACCESS_LOG_KEEP/)
  t.throws(() => loadConfig({ LOG_SINK_QUEUE: 'many' }), /LOG_SINK_QUEUE/)
  t.throws(() => loadConfig({ LOG_SINKS: 'ftp://logs' }), /LOG_SINKS.*unknown scheme/)
  t.throws(() => loadConfig({ LOG_SINKS: 'elasticsearch+http://es:9200/' }), /LOG_SINKS.*index/)
  try {
    loadConfig({ LOG_SINKS: 'elasticsearch+http://u:hunter2@es:9200/Upper' })
    t.fail('an uppercase index is refused')
  } catch (err) {
    t.match((err as Error).message, /LOG_SINKS: elasticsearch\+http:\/\/u:\*\*\*@es:9200\/Upper: the path must be one Elasticsearch index name/)
    t.notOk((err as Error).message.includes('hunter2'), 'the password is not in the message')
  }
  t.throws(() => loadConfig({ LOG_SINKS: 's3://bucket/prefix' }), /ACCESS_LOG_FILE must be set/)
  const config = loadConfig({})
  t.equal(config.accessLogRotateBytes, 104857600)
  t.equal(config.accessLogKeep, 10)
  t.equal(config.logSinkQueue, 10000)
})

t.test('WORKERS=2: one file per worker, SIGHUP to the primary reopens every worker\'s', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'access.log')
  const upstream = await startUpstream(t)
  const gateway = await spawnGateway(t, { WORKERS: '2', ACCESS_LOG_FILE: file }, { startTimeoutMs: 60_000 })
  const created = await httpRequest(`${gateway.url}/admin/routes`, {
    method: 'POST',
    headers: { ...adminHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'w', path: '/w', targets: [{ url: upstream.url, weight: 1 }] })
  })
  t.equal(created.statusCode, 201)
  const files = [path.join(dir, 'access-worker1.log'), path.join(dir, 'access-worker2.log')]
  const total = (): number => files.reduce((sum, name) => sum + (existsSync(name) ? readLines(name).filter((line) => line.path?.startsWith('/w')).length : 0), 0)
  // Fresh connections spread over both workers.
  for (let i = 0; i < 20; i++) await httpRequest(`${gateway.url}/w/${i}`, { headers: { connection: 'close' } })
  await until(() => total() === 20, 'all 20 lines')
  t.notOk(existsSync(file), 'no shared file')
  for (const name of files) t.ok(existsSync(name), `${path.basename(name)} exists`)

  for (const name of files) renameSync(name, `${name}.moved`)
  process.kill(gateway.process.pid as number, 'SIGHUP')
  await settle(300)
  for (let i = 0; i < 20; i++) await httpRequest(`${gateway.url}/w/after-${i}`, { headers: { connection: 'close' } })
  await until(() => total() === 20, 'the 20 lines after SIGHUP in new files')
  t.equal(await gateway.stop(), 0, 'the primary and its workers survived SIGHUP and exit cleanly')
})
