// The transform stages' own CPU per request, in isolation (built dist/): the two header rules
// and the rewrite of bench/transforms-cost.mjs applied to a typical upstream header list and
// answer head. Compare with the gateway's CPU per request that transforms-cost.mjs prints.
/* eslint-disable no-template-curly-in-string -- ${clientIp} is the gateway's template variable */
import { performance } from 'node:perf_hooks'
import { compileRequestTransforms, compileResponseTransforms } from '../dist/policies/transforms/stage.js'

const route = {
  name: 'transformed',
  requestHeaders: { remove: [], set: { 'x-client': '${clientIp}' }, add: {} },
  responseHeaders: { remove: ['x-powered-by'], set: {}, add: {} },
  rewrite: { from: '/v1/:rest*', to: '/api/bench/:rest*' }
}
const requestStage = compileRequestTransforms(route)
const responseStage = compileResponseTransforms(route)
const request = { id: 'b7e5c1d2-6f0a-4c1e-9a7b-2f1d3e4c5b6a', gateway: { clientIp: '127.0.0.1', consumer: null }, log: console }
const rawHeaders = ['host', '127.0.0.1:8080', 'user-agent', 'autocannon', 'accept', '*/*', 'x-request-id', request.id,
  'x-forwarded-for', '127.0.0.1', 'x-forwarded-proto', 'http', 'x-forwarded-host', '127.0.0.1:8080', 'x-real-ip', '127.0.0.1', 'via', '1.1 gatehouse']
const head = { 'content-type': 'application/json', 'content-length': 89, date: 'x', 'x-request-id': request.id, via: '1.1 gatehouse' }

const N = 2_000_000
let sink = 0
for (let round = 0; round < 3; round++) {
  const started = performance.now()
  for (let i = 0; i < N; i++) {
    const upstream = { path: '/v1/items/42', headers: rawHeaders.slice() }
    requestStage.onUpstreamRequest(request, upstream)
    const h = { ...head }
    responseStage.onResponseHead(request, h)
    sink += upstream.headers.length + upstream.path.length
  }
  const perRequest = (performance.now() - started) * 1000 / N
  console.log(`round ${round + 1}: ${perRequest.toFixed(3)} µs per request (header list copy and head copy included)`)
}
const started = performance.now()
for (let i = 0; i < N; i++) {
  const upstream = { path: '/v1/items/42', headers: rawHeaders.slice() }
  const h = { ...head }
  sink += upstream.headers.length + upstream.path.length + Object.keys(h).length
}
console.log(`the copies alone: ${((performance.now() - started) * 1000 / N).toFixed(3)} µs per request (${sink > 0 ? 'ok' : ''})`)
