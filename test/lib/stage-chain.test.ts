import t from 'tap'
import Fastify, { type FastifyReply, type FastifyRequest, type HookHandlerDoneFunction } from 'fastify'
import { chainStages, type Stage } from '../../lib/stage-chain.js'

/** An app whose one route is guarded by the chained stages; records which stages ran. */
async function appWith (stages: (ran: string[]) => Stage[]) {
  const ran: string[] = []
  const app = Fastify()
  app.addHook('onRequest', chainStages(stages(ran)))
  app.get('/', async () => ({ ran }))
  t.teardown(() => app.close())
  return { app, ran }
}

const passes = (name: string) => (ran: string[]): Stage => (_request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
  ran.push(name)
  done()
}

t.test('runs every stage in order, synchronous and asynchronous, then the handler', async (t) => {
  const { app } = await appWith((ran) => [
    passes('a')(ran),
    (_request, _reply, done) => { setImmediate(() => { ran.push('b (later)'); done() }) },
    passes('c')(ran)
  ])
  const response = await app.inject('/')
  t.equal(response.statusCode, 200)
  t.same(response.json(), { ran: ['a', 'b (later)', 'c'] })
})

t.test('a stage that answers stops the chain: later stages and the handler never run', async (t) => {
  const { app, ran } = await appWith((ran) => [
    passes('a')(ran),
    (_request, reply) => { ran.push('refuses'); void reply.code(403).send({ message: 'no' }) },
    passes('never')(ran)
  ])
  const response = await app.inject('/')
  t.equal(response.statusCode, 403)
  t.same(ran, ['a', 'refuses'])
})

t.test('an error thrown by a stage or passed to done reaches the error handler once', async (t) => {
  for (const [how, stage] of [
    ['thrown', () => { throw new Error('stage broke') }],
    ['passed to done', (_request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => { done(new Error('stage broke')) }],
    ['passed to done later', (_request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => { setImmediate(() => done(new Error('stage broke'))) }]
  ] as const) {
    const { app, ran } = await appWith((ran) => [passes('a')(ran), stage, passes('never')(ran)])
    let handled = 0
    app.setErrorHandler((err: Error, _request, reply) => { handled++; void reply.code(418).send({ message: err.message }) })
    const response = await app.inject('/')
    t.equal(response.statusCode, 418, how)
    t.equal(response.json().message, 'stage broke', how)
    t.equal(handled, 1, `${how}: handled once`)
    t.same(ran, ['a'], `${how}: later stages skipped`)
  }
})

t.test('an error thrown after a stage handed on is not blamed on that stage', async (t) => {
  const { app } = await appWith((ran) => [passes('a')(ran), passes('b')(ran)])
  let handled = 0
  app.setErrorHandler((err: Error, _request, reply) => { handled++; void reply.code(500).send({ message: err.message }) })
  app.get('/throws', () => { throw new Error('handler broke') })
  const response = await app.inject('/throws')
  t.equal(response.statusCode, 500)
  t.equal(response.json().message, 'handler broke')
  t.equal(handled, 1)
})
