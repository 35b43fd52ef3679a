// (a) of `npm run bench`: the smallest useful Fastify proxy — a catch-all route handing every
// request to @fastify/reply-from, logger off. Gatehouse is measured against this.
import Fastify from 'fastify'
import replyFrom from '@fastify/reply-from'

const app = Fastify({ logger: false })
await app.register(replyFrom, { base: process.env.UPSTREAM_URL })
app.removeAllContentTypeParsers()
// As @fastify/http-proxy does: the body stream itself is the parsed body, which reply-from streams upstream.
app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
app.all('/*', (request, reply) => { reply.from(request.url) })
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
