import path from 'node:path'
import SQLite from 'better-sqlite3'
import t from 'tap'
import { databaseProblem } from '../../lib/database-errors.js'
import { startGateway, tempDir } from '../helper.js'
import { call } from '../faults/load.js'

t.test('database errors that mean "away, full or locked" are told from wrong queries', async (t) => {
  t.same(databaseProblem(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5433'), { code: 'ECONNREFUSED' })),
    { message: 'database unreachable: connect ECONNREFUSED 127.0.0.1:5433', retryAfterSeconds: 5, unreachable: true })
  t.same(databaseProblem(new Error('Connection terminated unexpectedly')),
    { message: 'database unavailable: Connection terminated unexpectedly', retryAfterSeconds: 5, unreachable: true })
  t.same(databaseProblem(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })),
    { message: 'database unavailable (57P01): terminating connection due to administrator command', retryAfterSeconds: 5, unreachable: true })
  t.same(databaseProblem(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' })),
    { message: 'database disk is full (SQLITE_FULL): database or disk is full', retryAfterSeconds: 5, unreachable: false })
  t.same(databaseProblem(Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' })),
    { message: 'database is locked by another writer (SQLITE_BUSY)', retryAfterSeconds: 1, unreachable: false })
  t.equal(databaseProblem(Object.assign(new Error('syntax error at or near "x"'), { code: '42601' })), null, 'a wrong query stays an error')
  t.equal(databaseProblem(Object.assign(new Error('UNIQUE constraint failed'), { code: 'SQLITE_CONSTRAINT_UNIQUE' })), null)
  t.equal(databaseProblem('text'), null)
})

t.test('an admin write while another process holds the SQLite write lock: 503 naming it with Retry-After, not 500', async (t) => {
  const file = path.join(tempDir(t), 'gatehouse.db')
  const { url } = await startGateway(t, { databaseUrl: `sqlite:${file}` })
  const other = new SQLite(file)
  t.teardown(() => other.close())
  other.exec('begin immediate')
  const answer = await call(url, 'POST', '/admin/routes', { name: 'a', path: '/a', targets: [{ url: 'http://127.0.0.1:9' }] })
  other.exec('rollback')
  t.equal(answer.status, 503)
  t.equal(answer.headers['retry-after'], '1')
  t.match(answer.body, { statusCode: 503, error: 'Service Unavailable', message: 'database is locked by another writer (SQLITE_BUSY)' })
  t.type(answer.body.requestId, 'string')
  const again = await call(url, 'POST', '/admin/routes', { name: 'a', path: '/a', targets: [{ url: 'http://127.0.0.1:9' }] })
  t.equal(again.status, 201, 'fine once the lock is gone')
})
