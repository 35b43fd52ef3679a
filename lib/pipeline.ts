import type { FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { Route } from '../schemas/route.js'
import { GatewayError } from './errors.js'
import type { ResponseHead } from './proxy-headers.js'
import { chainStages, type Stage } from './stage-chain.js'

/**
 * The stages a matched route can run, in the order of policy (docs/policies.md, top). What
 * comes before route matching (request id, filters) applies to every request and is the
 * proxy's own (plugins/proxy.ts); forwarding and the audit come after. Names without a
 * policy yet (HTTPS redirect, cache, request transforms) hold their place for the issues
 * that add them. docs/architecture.md walks a request through them.
 */
export const STAGE_ORDER = ['https-redirect', 'cors', 'auth', 'rate-limit', 'body-limit', 'cache', 'request-transforms'] as const
export type StageName = typeof STAGE_ORDER[number]

/** Called on the response head about to be written (streamed from the upstream, or a 4xx of the gateway's). */
export type ResponseHeadHook = (request: FastifyRequest, head: ResponseHead) => void

/** What one policy does for one route, compiled once when the route table swaps. */
export interface RouteStage {
  readonly name: StageName
  /** Before forwarding: calls done() to go on, or answers the request itself (lib/gateway-reply.ts). */
  readonly onRequest?: Stage
  /** The last word on the response's headers, whoever answered. */
  readonly onResponseHead?: ResponseHeadHook
  /** The stage answers CORS preflights itself; without one, a preflight is a plain OPTIONS request. */
  readonly answersPreflight?: boolean
}

/** A policy's compile step: the stage a route runs, or null when the route does not use the policy. */
export type CompileStage = (route: Route) => RouteStage | null

/** A route's stages, compiled into what a request runs. */
export interface RoutePipeline {
  /** For inspection (tests, docs): the stages, in order. */
  readonly stages: readonly RouteStage[]
  /** Every stage's onRequest in order, as one hook; calls done() at once when there is none. */
  readonly onRequest: Stage
  /** Every stage's onResponseHead in order as one; null when no stage has one. */
  readonly onResponseHead: ResponseHeadHook | null
  readonly answersPreflight: boolean
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
      return { stages: [], onRequest: (_request, _reply, done) => { done(failure) }, onResponseHead: null, answersPreflight: false }
    }
    if (stage !== null) stages.push(stage)
  }
  const onRequest = stages.flatMap((stage) => stage.onRequest === undefined ? [] : [stage.onRequest])
  const onResponseHead = stages.flatMap((stage) => stage.onResponseHead === undefined ? [] : [stage.onResponseHead])
  return {
    stages,
    // One stage (the common case: the body limit alone) runs as the hook itself, no chain around it.
    onRequest: onRequest.length === 0 ? passOn : onRequest.length === 1 ? onRequest[0] : chainStages(onRequest),
    onResponseHead: onResponseHead.length === 0 ? null : onResponseHead.length === 1 ? onResponseHead[0] : allOf(onResponseHead),
    answersPreflight: stages.some((stage) => stage.answersPreflight === true)
  }
}

function passOn (_request: FastifyRequest, _reply: unknown, done: HookHandlerDoneFunction): void { done() }

function allOf (hooks: readonly ResponseHeadHook[]): ResponseHeadHook {
  return (request, head) => { for (const hook of hooks) hook(request, head) }
}
