import t from 'tap'
import { normalizePath } from '../../lib/normalize-path.js'

t.test('returns an already normal path unchanged', async (t) => {
  for (const path of ['/', '/api', '/api/', '/api/users/7', '/a.b/c..d/.e', '/a~b_c-d', '/caf%C3%A9']) {
    t.same(normalizePath(path), { ok: true, path }, path)
  }
})

t.test('resolves dot segments without climbing above the root', async (t) => {
  const cases: Array<[string, string]> = [
    ['/public/../private', '/private'],
    ['/public/./x', '/public/x'],
    ['/a/b/../../c', '/c'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/..', '/'],
    ['/.', '/'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/..b/c', '/a/..b/c']
  ]
  for (const [input, expected] of cases) t.same(normalizePath(input), { ok: true, path: expected }, input)
})

t.test('merges runs of slashes', async (t) => {
  t.same(normalizePath('//private'), { ok: true, path: '/private' })
  t.same(normalizePath('/a///b//'), { ok: true, path: '/a/b/' })
  t.same(normalizePath('//'), { ok: true, path: '/' })
})

t.test('decodes escaped unreserved characters before resolving dot segments', async (t) => {
  t.same(normalizePath('/%2e%2e/private'), { ok: true, path: '/private' })
  t.same(normalizePath('/public/%2e%2e/private'), { ok: true, path: '/private' })
  t.same(normalizePath('/public/.%2E/private'), { ok: true, path: '/private' })
  t.same(normalizePath('/%41%7a%30%2D%5F%7E'), { ok: true, path: '/Az0-_~' })
})

t.test('keeps other escapes encoded, with upper-case hex, and never decodes twice', async (t) => {
  t.same(normalizePath('/caf%c3%a9'), { ok: true, path: '/caf%C3%A9' })
  t.same(normalizePath('/a%3fb%23c%20d'), { ok: true, path: '/a%3Fb%23c%20d' })
  t.same(normalizePath('/%252e%252e/private'), { ok: true, path: '/%252e%252e/private' })
})

t.test('refuses what upstreams could read differently', async (t) => {
  const cases: Array<[string, string]> = [
    ['/public/x\\..\\..\\private/y', 'backslash in path'],
    ['/a%5Cb', 'encoded slash or backslash in path'],
    ['/a%5cb', 'encoded slash or backslash in path'],
    ['/public%2F..%2Fprivate', 'encoded slash or backslash in path'],
    ['/a%2fb', 'encoded slash or backslash in path'],
    ['/a%00b', 'encoded NUL in path'],
    ['/a%zzb', 'malformed percent-escape in path'],
    ['/a%2', 'malformed percent-escape in path'],
    ['/a%', 'malformed percent-escape in path'],
    ['http://evil/x', 'request target must be an absolute path'],
    ['*', 'request target must be an absolute path'],
    ['', 'request target must be an absolute path'],
    ['api', 'request target must be an absolute path']
  ]
  for (const [input, reason] of cases) t.same(normalizePath(input), { ok: false, reason }, input)
})
