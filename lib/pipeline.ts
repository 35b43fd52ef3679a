import type { IncomingHttpHeaders } from 'node:http'
import type { Transform } from 'node:stream'
import type { FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { Route } from '../schemas/route.js'
import { GatewayError } from './errors.js'
import type { ResponseHead } from './proxy-headers.js'
import { chainStages, type Stage } from './stage-chain.js'

/**
 * The stages a matched route can run, in the order of policy (docs/policies.md, top). What
 * comes before route matching (request id, filters) applies to every request and is the
 * proxy's own (plugins/proxy.ts); forwarding and the audit come after. Names without a
 * policy yet hold their place for the features that add them. docs/architecture.md walks a
 * request through them.
 *
 * Request-side hooks (onRequest, onUpstreamRequest) run in this order; response-side hooks
 * (onResponseHead, onResponseBody) in the reverse order, so the stage nearest the upstream
 * sees the answer first and CORS has the last word on its headers. Compression and response
 * transforms act only on the way back, so they sit before the cache: the cache stores the
 * upstream's own answer, and they apply to every answer, hits included (a hit's compressed
 * variant is kept rather than compressed again).
 */
export const STAGE_ORDER = [
  'https-redirect', 'cors', 'auth', 'rate-limit', 'body-limit', 'websocket',
  'compression', 'response-transforms', 'cache', 'request-transforms'
] as const
export type StageName = typeof STAGE_ORDER[number]

/** Called on the response head about to be written (streamed from the upstream, or a 4xx of the gateway's). */
export type ResponseHeadHook = (request: FastifyRequest, head: ResponseHead) => void

/**
 * The request about to go upstream: the forwarded path (after stripPath, before the target's
 * base path is put in front; the query string is not part of it) and the flat header list
 * [name, value, …] built from the client's. A stage may change both in place.
 */
export interface UpstreamRequest {
  path: string
  readonly headers: string[]
}

/** Changes the request about to go upstream; a GatewayError refuses it (answered at once, no target tried). */
export type UpstreamRequestHook = (request: FastifyRequest, upstream: UpstreamRequest) => GatewayError | null

/**
 * Called once per streamed upstream answer, after every onResponseHead ran and before the head
 * is written (it may still change `head`, e.g. drop Content-Length): a Transform the upstream's
 * body goes through on its way to the client, or null to leave this answer alone. `upstream`
 * is the upstream's own header block as received (what a cache stores), `head` what the client
 * will get. Backpressure holds through it: the upstream is paused while the Transform's buffer
 * is full. Answers the gateway makes itself (a stage's 4xx) are sent through Fastify and do not
 * pass here.
 */
export type ResponseBodyHook = (request: FastifyRequest, statusCode: number, head: ResponseHead, upstream: IncomingHttpHeaders) => Transform | null

/**
 * Called on an answer the gateway sends itself through Fastify with a Buffer body (a cache hit,
 * docs/transforms.md "Cached answers"), after every onResponseHead: the body to send instead
 * (it may change `head` to match), or null to send it as it is. A Promise lets the work leave
 * the event loop. Gateway errors (JSON strings) do not pass here.
 */
export type GatewayPayloadHook = (request: FastifyRequest, statusCode: number, head: ResponseHead, payload: Buffer) => Buffer | Promise<Buffer> | null

/** What one policy does for one route, compiled once when the route table swaps. */
export interface RouteStage {
  readonly name: StageName
  /** Before forwarding: calls done() to go on, or answers the request itself (lib/gateway-reply.ts). */
  readonly onRequest?: Stage
  /** Changes the request about to go upstream (headers, forwarded path). */
  readonly onUpstreamRequest?: UpstreamRequestHook
  /** The last word on the response's headers, whoever answered. */
  readonly onResponseHead?: ResponseHeadHook
  /** A filter on the upstream's streamed body. */
  readonly onResponseBody?: ResponseBodyHook
  /** A replacement for a Buffer body the gateway sends itself. */
  readonly onGatewayPayload?: GatewayPayloadHook
  /** The stage answers CORS preflights itself; without one, a preflight is a plain OPTIONS request. */
  readonly answersPreflight?: boolean
  /** The route's CORS policy: whether a browser Origin may use the route (WebSocket handshakes get no CORS headers to honour). */
  readonly allowsOrigin?: (origin: string) => boolean
}

/** A policy's compile step: the stage a route runs, or null when the route does not use the policy. */
export type CompileStage = (route: Route) => RouteStage | null

/** A route's stages, compiled into what a request runs. */
export interface RoutePipeline {
  /** For inspection (tests, docs): the stages, in order. */
  readonly stages: readonly RouteStage[]
  /** Every stage's onRequest in order, as one hook; calls done() at once when there is none. */
  readonly onRequest: Stage
  /** Every stage's onUpstreamRequest in order as one, stopping at the first refusal; null when no stage has one. */
  readonly onUpstreamRequest: UpstreamRequestHook | null
  /** Every stage's onResponseHead in reverse order as one; null when no stage has one. */
  readonly onResponseHead: ResponseHeadHook | null
  /** The body filters of this answer, in the order the body goes through them; null when no stage filters bodies. */
  readonly onResponseBody: ((request: FastifyRequest, statusCode: number, head: ResponseHead, upstream: IncomingHttpHeaders) => Transform[]) | null
  /** The one stage's onGatewayPayload (at most one stage may replace a body); null when none has one. */
  readonly onGatewayPayload: GatewayPayloadHook | null
  readonly answersPreflight: boolean
  /** The CORS stage's origin check; null when the route has no CORS policy (every Origin may). */
  readonly allowsOrigin: ((origin: string) => boolean) | null
}

/**
 * `failed` hears of a stage that could not compile. A policy that cannot compile a route must
 * not leave the route unguarded: the whole route then fails closed — every request answered
 * 503 by the error handler before any stage runs — until the route is fixed; the swap goes on
 * for every other route.
 */
export function compilePipeline (route: Route, compilers: ReadonlyMap<StageName, CompileStage>, failed: (err: Error) => void): RoutePipeline {
  const stages: RouteStage[] = []
  for (const name of STAGE_ORDER) {
    const compile = compilers.get(name)
    if (compile === undefined) continue
    let stage: RouteStage | null
    try {
      stage = compile(route)
    } catch (err) {
      failed(new Error(`stage ${name} failed to compile for route ${route.name}: ${(err as Error).message}`))
      const failure = new GatewayError(503, 'GW_ROUTE_UNAVAILABLE', 'this route is unavailable: its configuration failed to compile (see the gateway log)')
      return {
        stages: [],
        onRequest: (_request, _reply, done) => { done(failure) },
        onUpstreamRequest: null,
        onResponseHead: null,
        onResponseBody: null,
        onGatewayPayload: null,
        answersPreflight: false,
        allowsOrigin: null
      }
    }
    if (stage !== null) stages.push(stage)
  }
  const responseOrder = [...stages].reverse()
  const onRequest = stages.flatMap((stage) => stage.onRequest === undefined ? [] : [stage.onRequest])
  const onUpstreamRequest = stages.flatMap((stage) => stage.onUpstreamRequest === undefined ? [] : [stage.onUpstreamRequest])
  const onResponseHead = responseOrder.flatMap((stage) => stage.onResponseHead === undefined ? [] : [stage.onResponseHead])
  const onResponseBody = responseOrder.flatMap((stage) => stage.onResponseBody === undefined ? [] : [stage.onResponseBody])
  const onGatewayPayload = responseOrder.find((stage) => stage.onGatewayPayload !== undefined)?.onGatewayPayload ?? null
  return {
    stages,
    // One stage (the common case: the body limit alone) runs as the hook itself, no chain around it.
    onRequest: onRequest.length === 0 ? passOn : onRequest.length === 1 ? onRequest[0] : chainStages(onRequest),
    onUpstreamRequest: onUpstreamRequest.length === 0 ? null : onUpstreamRequest.length === 1 ? onUpstreamRequest[0] : firstRefusal(onUpstreamRequest),
    onResponseHead: onResponseHead.length === 0 ? null : onResponseHead.length === 1 ? onResponseHead[0] : allOf(onResponseHead),
    onResponseBody: onResponseBody.length === 0 ? null : bodyFilters(onResponseBody),
    onGatewayPayload,
    answersPreflight: stages.some((stage) => stage.answersPreflight === true),
    allowsOrigin: stages.find((stage) => stage.allowsOrigin !== undefined)?.allowsOrigin ?? null
  }
}

function passOn (_request: FastifyRequest, _reply: unknown, done: HookHandlerDoneFunction): void { done() }

function allOf (hooks: readonly ResponseHeadHook[]): ResponseHeadHook {
  return (request, head) => { for (const hook of hooks) hook(request, head) }
}

function firstRefusal (hooks: readonly UpstreamRequestHook[]): UpstreamRequestHook {
  return (request, upstream) => {
    for (const hook of hooks) {
      const refused = hook(request, upstream)
      if (refused !== null) return refused
    }
    return null
  }
}

function bodyFilters (hooks: readonly ResponseBodyHook[]): NonNullable<RoutePipeline['onResponseBody']> {
  return (request, statusCode, head, upstream) => {
    const filters: Transform[] = []
    for (const hook of hooks) {
      const filter = hook(request, statusCode, head, upstream)
      if (filter !== null) filters.push(filter)
    }
    return filters
  }
}
