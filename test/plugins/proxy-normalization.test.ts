import t from 'tap'
import { createRoute, rawHttp, startGateway, startUpstream, failOnUnhandledRejections } from '../helper.js'
import { parseRaw } from './proxy-raw.js'

failOnUnhandledRejections(t)

// /public and /private go to different upstreams. Every spelling below is sent raw (a
// client library would clean it up first); what an upstream receives must be exactly the
// normalised path, and a spelling that cannot be normalised safely reaches nobody.
const publicUpstream = await startUpstream(t, answer('public'))
const privateUpstream = await startUpstream(t, answer('private'))
const { app, port } = await startGateway(t)
await createRoute(app, { name: 'public', path: '/public', targets: [{ url: publicUpstream.url, weight: 1 }] })
await createRoute(app, { name: 'private', path: '/private', hosts: ['private.test'], targets: [{ url: privateUpstream.url, weight: 1 }] })

function answer (name: string) {
  return (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`${name} ${req.url}`)
  }
}

async function send (target: string, host = 'private.test', method = 'GET') {
  return parseRaw(await rawHttp(port, `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`))
}

function received (): string[] {
  return [...publicUpstream.requests.map((r) => `public ${r.url}`), ...privateUpstream.requests.map((r) => `private ${r.url}`)]
}

t.beforeEach(() => {
  publicUpstream.requests.length = 0
  privateUpstream.requests.length = 0
})

t.test('dot segments, duplicate slashes and escaped dots route on and forward the normalised path', async (t) => {
  const cases: Array<[string, string]> = [
    ['/public/../private', 'private /private'],
    ['//private', 'private /private'],
    ['/%2e%2e/private', 'private /private'],
    ['/public/%2e%2e/private', 'private /private'],
    ['/public/%2E%2e/private/y?q=%2e%2e/a', 'private /private/y?q=%2e%2e/a'],
    ['/public/./x/../../private//a/./b', 'private /private/a/b'],
    ['/pub%6cic/x', 'public /public/x'],
    ['/public/x/..', 'public /public/']
  ]
  for (const [target, expected] of cases) {
    const response = await send(target)
    t.equal(response.statusCode, 200, target)
    t.equal(response.body, expected, target)
  }
  t.same(received().sort(), cases.map(([, expected]) => expected).sort(), 'each upstream received exactly the normalised paths')
})

t.test('a spelling whose normalised path has no route is 404 and reaches no upstream', async (t) => {
  for (const target of ['/public/../private', '/public/%2e%2e/private', '//private', '/public/..']) {
    const response = await send(target, 'elsewhere.test')
    t.equal(response.statusCode, 404, target)
    t.equal(JSON.parse(response.body).message, 'no route matches this request', target)
  }
  t.same(received(), [])
})

t.test('ambiguous spellings are refused with 400 JSON and reach no upstream', async (t) => {
  const cases: Array<[string, string]> = [
    ['/public/x\\..\\..\\private/y', 'backslash in path'],
    ['/public\\..\\private', 'backslash in path'],
    ['/public/x%5C..%5C..%5Cprivate/y', 'encoded slash or backslash in path'],
    ['/public/x%5c..', 'encoded slash or backslash in path'],
    ['/public%2F..%2Fprivate', 'encoded slash or backslash in path'],
    ['/public/..%2fprivate', 'encoded slash or backslash in path'],
    ['/public/a%00b', 'encoded NUL in path'],
    ['/public/%zz', 'malformed percent-escape in path'],
    ['/public/%2', 'malformed percent-escape in path'],
    ['/%zz/../private', 'malformed percent-escape in path'],
    ['http://evil/private', 'request target must be an absolute path'],
    ['http://private.test/private', 'request target must be an absolute path']
  ]
  for (const [target, message] of cases) {
    const response = await send(target)
    t.equal(response.statusCode, 400, target)
    t.match(response.headers['content-type'], /^application\/json/, target)
    const body = JSON.parse(response.body)
    t.same(body, { statusCode: 400, error: 'Bad Request', message, requestId: response.headers['x-request-id'] }, target)
  }
  t.same(received(), [])
})

t.test('OPTIONS * is refused with 400 JSON, not proxied', async (t) => {
  const response = await send('*', 'private.test', 'OPTIONS')
  t.equal(response.statusCode, 400)
  t.same(JSON.parse(response.body), { statusCode: 400, error: 'Bad Request', message: 'request target must be an absolute path', requestId: response.headers['x-request-id'] })
  t.same(received(), [])
})

t.test('other escapes are forwarded encoded, never decoded twice', async (t) => {
  const response = await send('/private/caf%c3%a9/%252e%252e/a%20b%3F')
  t.equal(response.body, 'private /private/caf%C3%A9/%252e%252e/a%20b%3F')
})
