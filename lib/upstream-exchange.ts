import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyReply } from 'fastify'
import type { Dispatcher } from 'undici'

/** Raised into undici when the client went away: the upstream request is cancelled. */
export class ClientClosedError extends Error {
  constructor () { super('client closed the connection') }
}

/** What the exchange needs from the forwarding stage at each turn. */
export interface ExchangeHooks {
  /**
   * The first response byte (or its end) is about to go to the client: write the upstream's
   * status and headers to the (hijacked) reply's response, with whatever the gateway adds.
   */
  writeHead: (reply: FastifyReply, statusCode: number, headers: IncomingHttpHeaders) => void
  /** A chunk of the upstream's body is being passed on: the body's bytes so far, and the chunk's. */
  bodyChunk: (bodyBytes: number, bytes: number) => void
  /**
   * The upstream failed after its headers arrived (a reset, a body timeout), while the
   * client was still there. `canAnswer`: nothing was sent yet, so an error answer still can be.
   */
  failedAfterStart: (err: Error, canAnswer: boolean) => void
  /** The response reached the client whole, through the hijacked reply: record it. */
  completed: (reply: FastifyReply) => void
  /** The attempt is over, however it ended (exactly once). */
  settled: () => void
}

/**
 * One attempt at a target, through undici's dispatch API: the upstream's body is written
 * straight to the client's response as it arrives, with undici paused while the client's
 * socket is full. No Readable stream or pipe in between: per request that machinery cost
 * more CPU than all of the gateway's policies together (bench/, profiles in the notes).
 *
 * `started` settles when the upstream's status line and headers arrive, or rejects when the
 * attempt fails before that (then nothing reached the client and the caller may retry or
 * answer with an error). The head is written with the first body byte, as Fastify's stream
 * send does, so an upstream that fails between its headers and its body still gets the
 * client a 502 rather than a truncated 200.
 */
export class UpstreamExchange implements Dispatcher.DispatchHandler {
  readonly started: Promise<number>
  private resolveStarted!: (statusCode: number) => void
  private rejectStarted!: (err: Error) => void
  private controller: Dispatcher.DispatchController | null = null
  private statusCode = 0
  private headers: IncomingHttpHeaders | null = null
  private committed = false
  private bodyBytes = 0
  private done = false
  /** The client went away (the upstream request is aborted as soon as undici hands over its controller). */
  clientGone = false

  constructor (
    private readonly reply: FastifyReply,
    private readonly hooks: ExchangeHooks
  ) {
    this.started = new Promise((resolve, reject) => {
      this.resolveStarted = resolve
      this.rejectStarted = reject
    })
    const res = reply.raw
    // The request's socket, not the response's: a pipelined request's response is given
    // its socket only once the previous response has finished.
    if (reply.request.raw.socket.destroyed) this.clientGone = true
    else res.once('close', this.onClientClose)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.clientGone) controller.abort(new ClientClosedError())
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.statusCode = statusCode
    this.headers = headers
    this.resolveStarted(statusCode)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.committed) this.commit()
    this.bodyBytes += chunk.length
    this.hooks.bodyChunk(this.bodyBytes, chunk.length)
    if (!this.reply.raw.write(chunk)) {
      controller.pause()
      this.reply.raw.once('drain', this.resume)
    }
  }

  onResponseEnd (): void {
    if (!this.committed) this.commit()
    this.reply.raw.end()
    this.settle()
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.headers === null) {
      this.settle()
      this.rejectStarted(err)
      return
    }
    if (!this.clientGone) this.hooks.failedAfterStart(err, !this.committed)
    // Headers are out: the client can only be told by a cut connection (truncated, never hung).
    if (this.committed) this.reply.raw.destroy()
    this.settle()
  }

  private commit (): void {
    this.committed = true
    const reply = this.reply
    reply.hijack()
    this.hooks.writeHead(reply, this.statusCode, this.headers as IncomingHttpHeaders)
  }

  private readonly resume = (): void => { this.controller?.resume() }

  /** Every response ends with 'close': after 'finish' when it completed, without it when cut. */
  private readonly onClientClose = (): void => {
    const res = this.reply.raw
    if (res.writableFinished) {
      if (this.committed) this.hooks.completed(this.reply)
      return
    }
    this.clientGone = true
    if (!this.done) this.controller?.abort(new ClientClosedError())
  }

  private settle (): void {
    if (this.done) return
    this.done = true
    this.hooks.settled()
  }
}
