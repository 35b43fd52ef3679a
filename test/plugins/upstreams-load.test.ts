import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { Agent, request } from 'undici'
import { createRoute, failOnUnhandledRejections, startGateway } from '../helper.js'

failOnUnhandledRejections(t)

/** An upstream in its own process, so it can die as a real one does (SIGKILL: the kernel resets its sockets). */
async function processUpstream (t: Test, name: string): Promise<{ url: string, child: ChildProcess }> {
  const code = `
    const http = require('node:http')
    http.createServer((req, res) => {
      req.resume()
      req.on('end', () => setTimeout(() => res.end(${JSON.stringify(name)}), 2))
    }).listen(0, '127.0.0.1', function () { console.log(this.address().port) })`
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const [chunk] = await once(child.stdout as NodeJS.ReadableStream, 'data') as [Buffer]
  return { url: `http://127.0.0.1:${Number(chunk.toString().trim())}`, child }
}

interface Outcome { at: number, ok: boolean, detail: string }

/**
 * `concurrency` clients send requests back to back for durationMs; `killAt` ms in, one of the
 * two targets is SIGKILLed. Counts what clients saw in each phase.
 */
async function dieUnderLoad (t: Test, method: 'GET' | 'POST'): Promise<{ before: Outcome[], firstSecond: Outcome[], after: Outcome[], ejectedAfterMs: number | null }> {
  const a = await processUpstream(t, 'a')
  const b = await processUpstream(t, 'b')
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'pair', path: '/', retries: 1, targets: [{ url: a.url, weight: 1 }, { url: b.url, weight: 1 }] })
  const client = new Agent({ connections: 64 })
  t.teardown(() => client.close())

  const concurrency = 16
  const durationMs = 3000
  const killAt = 1000
  const outcomes: Outcome[] = []
  const start = Date.now()
  let killedAt = 0
  let ejectedAt: number | null = null
  const target = app.upstreams.target(b.url)

  const killer = setTimeout(() => {
    killedAt = Date.now() - start
    b.child.kill('SIGKILL')
  }, killAt)
  const watcher = setInterval(() => { if (ejectedAt === null && target?.ejectedUntil != null) ejectedAt = Date.now() - start }, 2)

  async function worker (): Promise<void> {
    while (Date.now() - start < durationMs) {
      try {
        const response = await request(`${url}/load`, { method, dispatcher: client, body: method === 'POST' ? 'payload' : undefined })
        const body = await response.body.text()
        outcomes.push({ at: Date.now() - start, ok: response.statusCode === 200, detail: response.statusCode === 200 ? body : `${response.statusCode}` })
      } catch (err) {
        outcomes.push({ at: Date.now() - start, ok: false, detail: (err as { code?: string }).code ?? 'error' })
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  clearTimeout(killer)
  clearInterval(watcher)

  const failures = (list: Outcome[]): Outcome[] => list.filter((outcome) => !outcome.ok)
  const before = outcomes.filter((outcome) => outcome.at < killedAt)
  const firstSecond = outcomes.filter((outcome) => outcome.at >= killedAt && outcome.at < killedAt + 1000)
  const after = outcomes.filter((outcome) => outcome.at >= killedAt + 1000)
  const ejectedAfterMs = ejectedAt === null ? null : ejectedAt - killedAt
  t.comment(`${method}: ${outcomes.length} requests at concurrency ${concurrency}; target b SIGKILLed at ${killedAt} ms, ejected ${ejectedAfterMs} ms later`)
  t.comment(`${method}: errors before the kill ${failures(before).length}/${before.length}, in the first second after ${failures(firstSecond).length}/${firstSecond.length}, later ${failures(after).length}/${after.length}`)
  const kinds = new Map<string, number>()
  for (const failure of failures(outcomes)) kinds.set(failure.detail, (kinds.get(failure.detail) ?? 0) + 1)
  if (kinds.size > 0) t.comment(`${method}: failures by kind ${JSON.stringify(Object.fromEntries(kinds))}`)
  t.comment(`${method}: retries ${/gatehouse_upstream_retries_total (\d+)/.exec(await app.metrics.registry.metrics())?.[1]}`)
  return { before, firstSecond, after, ejectedAfterMs }
}

t.test('GET traffic does not see one of two targets die: failed attempts are retried on the other', async (t) => {
  const { before, firstSecond, after, ejectedAfterMs } = await dieUnderLoad(t, 'GET')
  t.equal(before.filter((outcome) => !outcome.ok).length, 0)
  t.ok(firstSecond.length > 0 && after.length > 0, 'traffic kept flowing')
  t.equal(firstSecond.filter((outcome) => !outcome.ok).length, 0, 'no client-visible error in the first second')
  t.equal(after.filter((outcome) => !outcome.ok).length, 0)
  t.ok(after.every((outcome) => outcome.detail === 'a'), 'after ejection only the live target serves')
  t.ok(ejectedAfterMs !== null && ejectedAfterMs < 1000, `ejected ${ejectedAfterMs} ms after the kill`)
})

t.test('POST traffic (never retried) sees a bounded burst of 502s, then none once the target is ejected', async (t) => {
  const { firstSecond, after, ejectedAfterMs } = await dieUnderLoad(t, 'POST')
  const errors = firstSecond.filter((outcome) => !outcome.ok)
  t.ok(errors.length <= 16 + 3, `${errors.length} errors: at most the requests in flight to it plus 3 refused before ejection`)
  t.ok(errors.every((outcome) => outcome.detail === '502'), 'every failure is a 502 answer, never a hang or a reset')
  t.equal(after.filter((outcome) => !outcome.ok).length, 0)
  t.ok(ejectedAfterMs !== null && ejectedAfterMs < 1000, `ejected ${ejectedAfterMs} ms after the kill`)
})
