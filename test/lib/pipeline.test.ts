import t from 'tap'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { type CompileStage, compilePipeline, type RouteStage, STAGE_ORDER, type StageName } from '../../lib/pipeline.js'
import type { ResponseHead } from '../../lib/proxy-headers.js'
import type { Route } from '../../schemas/route.js'
import { GatewayError } from '../../lib/errors.js'

const route = { id: 'r1', name: 'orders' } as Route
const request = {} as FastifyRequest
const reply = {} as FastifyReply

function stage (name: StageName, ran: string[]): RouteStage {
  return {
    name,
    onRequest (_request, _reply, done) { ran.push(name); done() },
    onResponseHead (_request, head) { head[`x-${name}`] = '1' }
  }
}

function run (hook: NonNullable<RouteStage['onRequest']>): Promise<Error | undefined> {
  return new Promise((resolve) => { hook(request, reply, ((err?: Error) => { resolve(err) }) as HookHandlerDoneFunction) })
}

t.test('stages run in the documented order (docs/policies.md) whatever the order they were registered in', async (t) => {
  const ran: string[] = []
  const compilers = new Map<StageName, CompileStage>([...STAGE_ORDER].reverse().map((name) => [name, () => stage(name, ran)]))
  const pipeline = compilePipeline(route, compilers, () => t.fail('nothing fails'))
  t.same(pipeline.stages.map((compiled) => compiled.name), [
    'https-redirect', 'cors', 'auth', 'rate-limit', 'body-limit', 'websocket',
    'compression', 'response-transforms', 'cache', 'request-transforms'
  ])
  t.equal(await run(pipeline.onRequest), undefined)
  t.same(ran, STAGE_ORDER)
  const head: ResponseHead = {}
  pipeline.onResponseHead?.(request, head)
  t.same(Object.keys(head), [...STAGE_ORDER].reverse().map((name) => `x-${name}`), 'response-side hooks run nearest the upstream first')
})

t.test('upstream-request hooks run in order and stop at the first refusal', async (t) => {
  const seen: string[] = []
  const refusal = new GatewayError(400, 'GW_TEST', 'refused')
  const pipeline = compilePipeline(route, new Map<StageName, CompileStage>([
    ['request-transforms', () => ({ name: 'request-transforms', onUpstreamRequest () { seen.push('request-transforms'); return null } })],
    ['cache', () => ({ name: 'cache', onUpstreamRequest (_request, upstream) { seen.push('cache'); upstream.path = '/v2'; return refusal } })],
    ['body-limit', () => ({ name: 'body-limit', onUpstreamRequest (_request, upstream) { seen.push('body-limit'); upstream.headers.push('x-cache', '1'); return null } })]
  ]), () => t.fail('nothing fails'))
  const upstream = { path: '/v1', headers: [] as string[] }
  t.equal(pipeline.onUpstreamRequest?.(request, upstream), refusal)
  t.same(seen, ['body-limit', 'cache'], 'the stage after the refusal did not run')
  t.same(upstream, { path: '/v2', headers: ['x-cache', '1'] })
  t.equal(pipeline.onResponseBody, null, 'no stage filters bodies')
})

t.test('a compile step returning null adds nothing; one stage runs as the hook itself', async (t) => {
  const ran: string[] = []
  const only = stage('body-limit', ran)
  const pipeline = compilePipeline(route, new Map<StageName, CompileStage>([['cors', () => null], ['body-limit', () => only]]), () => t.fail('nothing fails'))
  t.same(pipeline.stages, [only])
  t.equal(pipeline.onRequest, only.onRequest, 'no chain around a single stage')
  t.equal(pipeline.onResponseHead, only.onResponseHead)
  t.equal(pipeline.answersPreflight, false)

  const empty = compilePipeline(route, new Map(), () => t.fail('nothing fails'))
  t.same(empty.stages, [])
  t.equal(empty.onResponseHead, null)
  t.equal(await run(empty.onRequest), undefined, 'goes straight on')
})

t.test('a compile step that throws fails the whole route closed with a 503 before any stage runs', async (t) => {
  const ran: string[] = []
  const failures: string[] = []
  const pipeline = compilePipeline(route, new Map<StageName, CompileStage>([
    ['auth', () => stage('auth', ran)],
    ['cache', () => { throw new Error('bad cache config') }]
  ]), (err) => { failures.push(err.message) })
  t.same(failures, ['stage cache failed to compile for route orders: bad cache config'])
  t.same(pipeline.stages, [])
  const err = await run(pipeline.onRequest) as Error & { statusCode: number, code: string }
  t.equal(err.statusCode, 503)
  t.equal(err.code, 'GW_ROUTE_UNAVAILABLE')
  t.same(ran, [], 'not even the stages before the broken one')
})
