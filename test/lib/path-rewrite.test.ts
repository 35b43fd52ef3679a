import t from 'tap'
import { compileRewrite, rewritePath, rewriteProblem } from '../../lib/path-rewrite.js'

const rewrite = (from: string, to: string, path: string) => rewritePath(compileRewrite({ from, to }), path)

t.test(':name* takes the rest, zero or more segments', async (t) => {
  t.equal(rewrite('/v1/:rest*', '/v2/:rest*', '/v1/users/7'), '/v2/users/7')
  t.equal(rewrite('/v1/:rest*', '/v2/:rest*', '/v1'), '/v2')
  t.equal(rewrite('/v1/:rest*', '/v2/:rest*', '/v1/'), '/v2/')
  t.equal(rewrite('/v1/:rest*', '/v2/:rest*', '/v10/x'), null, 'segments, not prefixes')
  t.equal(rewrite('/v1/:rest*', '/v2/:rest*', '/v2/x'), null)
  t.equal(rewrite('/:rest*', '/api/:rest*', ''), '/api', 'the path stripPath left empty')
})

t.test(':name takes one non-empty segment and may move', async (t) => {
  t.equal(rewrite('/users/:id/orders', '/orders/by-user/:id', '/users/42/orders'), '/orders/by-user/42')
  t.equal(rewrite('/users/:id/orders', '/orders/by-user/:id', '/users/42/orders/9'), null)
  t.equal(rewrite('/users/:id', '/u/:id', '/users/'), null)
  t.equal(rewrite('/:a/:b', '/:b/:a', '/x/y'), '/y/x')
  t.equal(rewrite('/files/:name', '/f/:name', '/files/caf%C3%A9'), '/f/caf%C3%A9', 'escapes stay as they are')
})

t.test('a captured "." or ".." (a path that was not normalised) is refused, never forwarded', async (t) => {
  t.same(rewrite('/a/:rest*', '/b/:rest*', '/a/../../etc'), { refused: 'the rewritten path would leave the target\'s base path' })
  t.same(rewrite('/a/:x', '/b/:x', '/a/..'), { refused: 'the rewritten path would leave the target\'s base path' })
  t.same(rewrite('/a/:x', '/b/:x', '/a/.'), { refused: 'the rewritten path would leave the target\'s base path' })
})

t.test('admin validation names the field', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['v1', '/v2', /^r\/from must start with "\/"/],
    ['/v1', '/../x', /^r\/to must not contain "\." or "\.\." segments/],
    ['/v1', '/a/./x', /must not contain "\." or "\.\."/],
    ['/v1/:x', '/:y', /^r\/to uses :y, which from does not define/],
    ['/v1/:x*', '/:x', /defines it as :x\*/],
    ['/:x*/y', '/:x*', /only as its last segment/],
    ['/:x/:x', '/:x', /uses :x twice/],
    ['/a//b', '/b', /must not contain "\/\/"/],
    ['/:9x', '/b', /bad parameter/],
    ['/a b', '/b', /outside RFC 3986/],
    ['/%41', '/b', /normalised form/]
  ]
  for (const [from, to, expected] of cases) t.match(rewriteProblem({ from, to }, 'r'), expected, `${from} → ${to}`)
  t.equal(rewriteProblem({ from: '/v1/:id/:rest*', to: '/v2/:rest*/:id/' }, 'r'), null)
})
