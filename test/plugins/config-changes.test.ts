import path from 'node:path'
import t from 'tap'
import { buildTestApp, createRoute, tempDir } from '../helper.js'

const target = { url: 'http://127.0.0.1:9', weight: 1 }

t.test('a registered reload runs at once and after every change, not when nothing changed', async (t) => {
  const app = await buildTestApp(t, { build: { configPollIntervalMs: 60_000 } })
  let runs = 0
  await app.configChanges.onChange('counter', async () => { runs++ })
  t.equal(runs, 1, 'ran at registration')
  const version = app.configChanges.version
  await app.configChanges.refresh()
  t.equal(runs, 1, 'refresh without a change does not reload')

  await createRoute(app, { name: 'a', path: '/a', targets: [target] })
  t.equal(app.configChanges.version, version + 1, 'one change, one bump')
  t.equal(runs, 2, 'reloaded before the admin answer')
  await app.configChanges.refresh()
  t.equal(runs, 2)
})

t.test('a failing reload does not stop the others or the admin change', async (t) => {
  const app = await buildTestApp(t, { build: { configPollIntervalMs: 60_000 } })
  let failing = false
  let after = 0
  await app.configChanges.onChange('fragile', async () => { if (failing) throw new Error('boom') })
  await app.configChanges.onChange('after', async () => { after++ })
  failing = true
  await createRoute(app, { name: 'a', path: '/a', targets: [target] })
  t.equal(after, 2, 'the next concern still reloaded')
  t.same(app.routeTable.routes.map((route) => route.name), ['a'])
})

t.test('refreshes never interleave', async (t) => {
  const app = await buildTestApp(t, { build: { configPollIntervalMs: 60_000 } })
  let running = 0
  let most = 0
  await app.configChanges.onChange('slow', async () => {
    running++
    most = Math.max(most, running)
    await new Promise((resolve) => setTimeout(resolve, 20))
    running--
  })
  await Promise.all([1, 2, 3].map(async () => {
    await app.configChanges.bump(app.db)
    await app.configChanges.refresh()
  }))
  t.equal(most, 1)
})

t.test('a change made elsewhere is picked up by the poll alone', async (t) => {
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'shared.db')}`
  const watcher = await buildTestApp(t, { databaseUrl, build: { configPollIntervalMs: 50 } })
  const writer = await buildTestApp(t, { databaseUrl, build: { configPollIntervalMs: 60_000 } })
  let runs = 0
  await watcher.configChanges.onChange('counter', async () => { runs++ })
  await writer.configChanges.bump(writer.db)
  const started = Date.now()
  while (runs < 2 && Date.now() - started < 2000) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(runs, 2, `seen after ${Date.now() - started} ms`)
  t.equal(watcher.configChanges.version, writer.configChanges.version + 1, 'the writer itself has not refreshed')
  await writer.configChanges.refresh()
  t.equal(watcher.configChanges.version, writer.configChanges.version)
})
