import t from 'tap'
import { CompressibleTypes, compressibleAnswer, markCompressed, negotiateEncoding, varyOnAcceptEncoding } from '../../lib/compression.js'

t.test('q-values decide; the route\'s order breaks ties', async (t) => {
  t.equal(negotiateEncoding('gzip, br', ['br', 'gzip']), 'br')
  t.equal(negotiateEncoding('gzip, br', ['gzip', 'br']), 'gzip')
  t.equal(negotiateEncoding('br;q=0.5, gzip;q=0.8', ['br', 'gzip']), 'gzip')
  t.equal(negotiateEncoding('br;q=0, gzip', ['br', 'gzip']), 'gzip')
  t.equal(negotiateEncoding('br;q=0, gzip;q=0', ['br', 'gzip']), null)
  t.equal(negotiateEncoding('*', ['br', 'gzip']), 'br')
  t.equal(negotiateEncoding('*;q=0.1, gzip;q=0.5', ['br', 'gzip']), 'gzip')
  t.equal(negotiateEncoding('*, br;q=0', ['br', 'gzip']), 'gzip')
  t.equal(negotiateEncoding('X-GZIP', ['br', 'gzip']), 'gzip')
  t.equal(negotiateEncoding('identity', ['br', 'gzip']), null)
  t.equal(negotiateEncoding('deflate', ['br', 'gzip']), null)
  t.equal(negotiateEncoding(undefined, ['br', 'gzip']), null, 'no header: as it is')
  t.equal(negotiateEncoding('br;q=abc, gzip', ['br', 'gzip']), 'gzip', 'a malformed q refuses')
  t.equal(negotiateEncoding(' gzip ; q=1.0 , br ; q=0.999', ['br', 'gzip']), 'gzip')
})

t.test('what may be compressed', async (t) => {
  const types = new CompressibleTypes(['text/*', 'application/json'])
  const ok = (head: Record<string, string>, status = 200, length: number | null = null) => compressibleAnswer(status, head, types, 100, length)
  t.ok(ok({ 'content-type': 'application/json; charset=utf-8' }))
  t.ok(ok({ 'content-type': 'TEXT/HTML' }))
  t.notOk(ok({ 'content-type': 'text/event-stream' }), 'SSE never')
  t.notOk(ok({ 'content-type': 'image/png' }))
  t.notOk(ok({}), 'no type')
  t.notOk(ok({ 'content-type': 'text/plain', 'content-encoding': 'gzip' }))
  t.ok(ok({ 'content-type': 'text/plain', 'content-encoding': 'identity' }))
  t.notOk(ok({ 'content-type': 'text/plain' }, 206))
  t.notOk(ok({ 'content-type': 'text/plain', 'content-range': 'bytes 0-1/2' }))
  t.notOk(ok({ 'content-type': 'text/plain', 'cache-control': 'public, No-Transform' }))
  t.notOk(ok({ 'content-type': 'text/plain' }, 204))
  t.notOk(ok({ 'content-type': 'text/plain' }, 304))
  t.notOk(ok({ 'content-type': 'text/plain' }, 200, 99), 'under minBytes')
  t.ok(ok({ 'content-type': 'text/plain' }, 200, 100))
})

t.test('a compressed head: encoding set, length and ranges dropped, strong ETag weakened, Vary merged', async (t) => {
  const head: Record<string, string | string[] | number | undefined> = { 'content-length': 10, etag: '"abc"', vary: 'Origin', 'accept-ranges': 'bytes' }
  markCompressed(head, 'br')
  t.same(head, { 'content-length': undefined, etag: 'W/"abc"', vary: 'Origin, Accept-Encoding', 'accept-ranges': undefined, 'content-encoding': 'br' })
  const weak: Record<string, string | undefined> = { etag: 'W/"x"', vary: 'accept-encoding' }
  markCompressed(weak, 'gzip')
  t.equal(weak.etag, 'W/"x"')
  t.equal(weak.vary, 'accept-encoding')
  const star: Record<string, string> = { vary: '*' }
  varyOnAcceptEncoding(star)
  t.equal(star.vary, '*')
})
