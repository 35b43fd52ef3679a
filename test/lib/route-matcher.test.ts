import t from 'tap'
import { RouteMatcher, hostName, routePrefix, routePrefixOf } from '../../lib/route-matcher.js'
import type { Route } from '../../schemas/route.js'

let next = 0
function route (fields: Partial<Route> & { path: string }): Route {
  next++
  return {
    id: `r${next}`,
    name: `route-${next}`,
    hosts: [],
    methods: [],
    stripPath: false,
    preserveHost: false,
    targets: [{ url: 'http://127.0.0.1:9', weight: 1 }],
    loadBalancing: 'round-robin',
    healthCheck: null,
    timeoutMs: 1000,
    retries: 0,
    bodyLimit: 1024,
    auth: { type: 'none' },
    rateLimit: null,
    cors: null,
    cache: null,
    enabled: true,
    httpsRedirect: false,
    upstreamTls: null,
    websocket: false,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...fields
  }
}

function name (matched: Route | null): string | null {
  return matched === null ? null : matched.name
}

t.test('matches a prefix only on a segment boundary', async (t) => {
  const matcher = new RouteMatcher([route({ name: 'api', path: '/api' })])
  t.equal(name(matcher.match('GET', '', '/api')), 'api')
  t.equal(name(matcher.match('GET', '', '/api/')), 'api')
  t.equal(name(matcher.match('GET', '', '/api/x/y')), 'api')
  t.equal(name(matcher.match('GET', '', '/apix')), null)
  t.equal(name(matcher.match('GET', '', '/ap')), null)
  t.equal(name(matcher.match('GET', '', '/')), null)
})

t.test('the longest matching path wins, whatever the creation order', async (t) => {
  const matcher = new RouteMatcher([
    route({ name: 'root', path: '/' }),
    route({ name: 'users-7', path: '/api/users/7' }),
    route({ name: 'api', path: '/api' }),
    route({ name: 'users', path: '/api/users' })
  ])
  t.equal(name(matcher.match('GET', '', '/api/users/7/orders')), 'users-7')
  t.equal(name(matcher.match('GET', '', '/api/users/8')), 'users')
  t.equal(name(matcher.match('GET', '', '/api/other')), 'api')
  t.equal(name(matcher.match('GET', '', '/other')), 'root')
  t.equal(name(matcher.match('GET', '', '/')), 'root')
})

t.test('a route path with a trailing slash or unnormalised spelling is the same prefix', async (t) => {
  const matcher = new RouteMatcher([
    route({ name: 'slash', path: '/api/' }),
    route({ name: 'tilde', path: '/%7Euser//docs/./v1' })
  ])
  t.equal(name(matcher.match('GET', '', '/api')), 'slash')
  t.equal(name(matcher.match('GET', '', '/api/x')), 'slash')
  t.equal(name(matcher.match('GET', '', '/apix')), null)
  t.equal(name(matcher.match('GET', '', '/~user/docs/v1/page')), 'tilde')
  t.equal(routePrefix('/api//'), '/api')
  t.equal(routePrefix('/'), '/')
  t.equal(routePrefix('/a/b/../c/'), '/a/c')
  t.equal(routePrefixOf(route({ path: '/x/./y/' })), '/x/y')
})

t.test('among equal paths exact hosts beat wildcard hosts, which beat none', async (t) => {
  const matcher = new RouteMatcher([
    route({ name: 'any', path: '/api' }),
    route({ name: 'wild', path: '/api', hosts: ['*.example.com'] }),
    route({ name: 'exact', path: '/api', hosts: ['API.example.com'] })
  ])
  t.equal(name(matcher.match('GET', 'api.example.com', '/api')), 'exact')
  t.equal(name(matcher.match('GET', 'www.example.com', '/api')), 'wild')
  t.equal(name(matcher.match('GET', 'a.b.example.com', '/api')), 'wild')
  t.equal(name(matcher.match('GET', 'example.com', '/api')), 'any')
  t.equal(name(matcher.match('GET', 'badexample.com', '/api')), 'any')
  t.equal(name(matcher.match('GET', '', '/api')), 'any')
})

t.test('a longer path restricted to another host loses to a shorter path for this host', async (t) => {
  const matcher = new RouteMatcher([
    route({ name: 'short', path: '/api' }),
    route({ name: 'long-other-host', path: '/api/v1', hosts: ['other.test'] })
  ])
  t.equal(name(matcher.match('GET', 'mine.test', '/api/v1/x')), 'short')
  t.equal(name(matcher.match('GET', 'other.test', '/api/v1/x')), 'long-other-host')
})

t.test('a method not listed falls through to shorter prefixes, then to no match', async (t) => {
  const matcher = new RouteMatcher([
    route({ name: 'writes', path: '/api/users', methods: ['POST', 'PUT'] }),
    route({ name: 'reads', path: '/api', methods: ['GET'] })
  ])
  t.equal(name(matcher.match('POST', '', '/api/users/1')), 'writes')
  t.equal(name(matcher.match('GET', '', '/api/users/1')), 'reads')
  t.equal(name(matcher.match('DELETE', '', '/api/users/1')), null)
  t.equal(name(matcher.match('HEAD', '', '/api/users/1')), null, 'HEAD must be listed itself')
})

t.test('disabled routes are ignored', async (t) => {
  const matcher = new RouteMatcher([
    route({ name: 'off', path: '/api/users', enabled: false }),
    route({ name: 'api', path: '/api' })
  ])
  t.equal(matcher.size, 1)
  t.equal(name(matcher.match('GET', '', '/api/users')), 'api')
})

t.test('among equal paths and host rules the older route wins', async (t) => {
  const matcher = new RouteMatcher([route({ name: 'first', path: '/a' }), route({ name: 'second', path: '/a' })])
  t.equal(name(matcher.match('GET', '', '/a')), 'first')
})

t.test('hostName drops the port and a trailing dot and lower-cases', async (t) => {
  t.equal(hostName(undefined), '')
  t.equal(hostName(''), '')
  t.equal(hostName('Example.COM'), 'example.com')
  t.equal(hostName('Example.COM:8080'), 'example.com')
  t.equal(hostName('example.com.'), 'example.com')
  t.equal(hostName('example.com.:80'), 'example.com')
  t.equal(hostName('[::1]:8080'), '[::1]')
  t.equal(hostName('[::1]'), '[::1]')
})

t.test('hosts written with a trailing dot or upper case match', async (t) => {
  const matcher = new RouteMatcher([route({ name: 'dot', path: '/', hosts: ['Example.com.'] })])
  t.equal(name(matcher.match('GET', hostName('EXAMPLE.com:443'), '/')), 'dot')
})

t.test('finds the right route among 10,000 with one lookup per path segment', async (t) => {
  const many: Route[] = []
  for (let i = 0; i < 10_000; i++) many.push(route({ name: `r${i}`, path: `/svc${i}/api` }))
  const matcher = new RouteMatcher(many)
  t.equal(name(matcher.match('GET', '', '/svc9999/api/x')), 'r9999')
  t.equal(name(matcher.match('GET', '', '/svc10000/api/x')), null)
})
