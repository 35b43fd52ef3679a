import t from 'tap'
import { parseCacheControl, requestCacheMode, storability, varyNames } from '../../lib/cache/cache-control.js'
import { type CacheEntry, deserializeEntry, serializeEntry, storedHeaders } from '../../lib/cache/entry.js'
import { Flights } from '../../lib/cache/flights.js'
import { MemoryCacheStore } from '../../lib/cache/memory-store.js'
import { underPrefix } from '../../lib/cache/store.js'

const policy = { statuses: new Set([200, 404]), ttlSeconds: 60, staleWhileRevalidateSeconds: 0, staleIfErrorSeconds: 0 }
const NOW = Date.parse('2026-01-01T00:00:00Z')

t.test('Cache-Control parsing: case, quotes, arguments, first occurrence wins', async (t) => {
  const directives = parseCacheControl('Public, MAX-AGE=60, s-maxage="120", max-age=5, no-cache="set-cookie"')
  t.equal(directives.get('public'), '')
  t.equal(directives.get('max-age'), '60')
  t.equal(directives.get('s-maxage'), '120')
  t.equal(directives.get('no-cache'), 'set-cookie')
  t.equal(parseCacheControl(undefined).size, 0)
  t.same(varyNames('Accept-Encoding, accept-language ,X-A'), ['accept-encoding', 'accept-language', 'x-a'])
  t.same(varyNames('*'), ['*'])
})

t.test('request modes: no-store over no-cache; Pragma only without Cache-Control', async (t) => {
  t.equal(requestCacheMode({}), 'normal')
  t.equal(requestCacheMode({ 'cache-control': 'no-cache, no-store' }), 'no-store')
  t.equal(requestCacheMode({ 'cache-control': 'max-age=0, no-cache' }), 'no-cache')
  t.equal(requestCacheMode({ pragma: 'no-cache' }), 'no-cache')
  t.equal(requestCacheMode({ pragma: 'no-cache', 'cache-control': 'max-age=10' }), 'normal')
})

t.test('storability and freshness (RFC 9111 §3, §4.2.1)', async (t) => {
  t.match(storability(200, { 'cache-control': 's-maxage=10, max-age=100' }, policy, NOW), { freshMs: 10_000 })
  t.match(storability(200, { 'cache-control': 'max-age=100' }, policy, NOW), { freshMs: 100_000 })
  t.match(storability(200, { 'cache-control': 'max-age=100', age: '30' }, policy, NOW), { freshMs: 70_000, initialAgeSeconds: 30 })
  t.match(storability(200, { expires: 'Thu, 01 Jan 2026 00:01:00 GMT', date: 'Thu, 01 Jan 2026 00:00:00 GMT' }, policy, NOW), { freshMs: 60_000 })
  t.equal(storability(200, { expires: '0' }, policy, NOW), 'already stale')
  t.match(storability(200, {}, policy, NOW), { freshMs: 60_000 })
  t.match(storability(200, { 'cache-control': 'no-cache', etag: '"a"' }, policy, NOW), { freshMs: 0, staleIfErrorMs: 0 })
  t.equal(storability(500, {}, policy, NOW), 'status 500 is not in cache.statuses')
  t.equal(storability(200, { 'set-cookie': ['a=b'] }, policy, NOW), 'the answer sets a cookie')
  t.equal(storability(200, { vary: 'Accept, *' }, policy, NOW), 'Vary: *')
  t.equal(storability(200, { 'cache-control': 'public, no-store' }, policy, NOW), 'Cache-Control: no-store')
  t.equal(storability(200, { 'cache-control': 'private' }, policy, NOW), 'Cache-Control: private')
  t.equal(storability(200, { 'content-range': 'bytes 0-1/2' }, policy, NOW), 'a partial answer')
  t.match(storability(200, { 'cache-control': 'max-age=1, must-revalidate' }, { ...policy, staleIfErrorSeconds: 9 }, NOW), { staleIfErrorMs: 0 })
})

function entry (body: string, extra: Partial<CacheEntry> = {}): CacheEntry {
  return {
    status: 200, headers: { 'content-type': 'text/plain' }, body: Buffer.from(body), receivedAt: NOW, freshUntil: NOW + 60_000,
    staleWhileRevalidateUntil: NOW + 60_000, staleIfErrorUntil: NOW + 60_000, keepUntil: NOW + 60_000, initialAgeSeconds: 0, varyNames: [], ...extra
  }
}
const key = (path: string, routeId = 'r1') => ({ routeId, path, url: path, primary: JSON.stringify([routeId, path]) })

t.test('stored headers drop hop-by-hop, per-answer and Connection-named headers', async (t) => {
  t.same(storedHeaders({ connection: 'x-hop', 'x-hop': '1', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', 'content-length': '3', age: '4', 'x-request-id': 'up', etag: '"e"', x_under: '1' }), { etag: '"e"' })
})

t.test('entries survive serialisation byte for byte', async (t) => {
  const body = Buffer.from([0, 255, 10, 13, 128, 1])
  const original = entry('', { body, headers: { etag: '"x"', link: ['<a>', '<b>'] }, varyNames: ['accept'] })
  const copy = deserializeEntry(serializeEntry(original)) as CacheEntry
  t.ok(copy.body.equals(body))
  t.same({ ...copy, body: null }, { ...original, body: null })
  t.equal(deserializeEntry(Buffer.from('junk')), null)
})

t.test('memory store: variants, URL invalidation, purge by route and prefix, LRU bound', async (t) => {
  const store = new MemoryCacheStore(100_000)
  store.set(key('/a'), {}, entry('a'))
  store.set(key('/a/b'), {}, entry('b'))
  store.set(key('/ab'), {}, entry('c'))
  store.set(key('/a', 'r2'), {}, entry('d'))
  const varying = key('/v')
  store.set(varying, { 'accept-language': 'en' }, entry('en', { varyNames: ['accept-language'] }))
  store.set(varying, { 'accept-language': 'fr' }, entry('fr', { varyNames: ['accept-language'] }))
  t.equal(store.get(varying, { 'accept-language': 'fr' }, NOW)?.body.toString(), 'fr')
  t.equal(store.get(varying, { 'accept-language': 'de' }, NOW), null)
  t.equal(store.entries, 6)
  t.equal(store.get(key('/a'), {}, NOW + 60_000), null, 'gone once kept long enough')
  t.equal(store.invalidateUrl('r1', '/v'), 2)
  t.equal(await store.purge('r1', '/a'), 1, '/a/b (the /a entry already expired); not /ab')
  t.equal(store.get(key('/ab'), {}, NOW)?.body.toString(), 'c')
  t.equal(await store.purge(null, null), 2)
  t.equal(store.bytes, 0)

  const small = new MemoryCacheStore(6000)
  small.set(key('/1'), {}, entry('x'.repeat(1500)))
  small.set(key('/2'), {}, entry('x'.repeat(1500)))
  small.get(key('/1'), {}, NOW)
  small.set(key('/3'), {}, entry('x'.repeat(1500)))
  t.equal(small.entries, 2)
  t.not(small.get(key('/1'), {}, NOW), null, 'recently used stays')
  t.equal(small.get(key('/2'), {}, NOW), null, 'least recently used evicted')
  small.set(key('/huge'), {}, entry('x'.repeat(7000)))
  t.equal(small.get(key('/huge'), {}, NOW), null, 'larger than the bound: not stored')
})

t.test('flights: one leader, waiters get its value, a timeout gives null', async (t) => {
  const flights = new Flights<string>()
  const flight = flights.lead('k')
  t.not(flight, null)
  t.equal(flights.lead('k'), null)
  const waiting = flights.wait('k', 1000)
  const timingOut = flights.wait('k', 10)
  t.equal(await timingOut, null)
  flight?.finish('value')
  flight?.finish('again')
  t.equal(await waiting, 'value')
  t.equal(flights.wait('k', 10), undefined, 'landed')
  t.ok(underPrefix('/a/b', '/a') && underPrefix('/a', '/a') && !underPrefix('/ab', '/a') && underPrefix('/x', null))
})
