import type { IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import type { Writable } from 'node:stream'
import type { FastifyReply } from 'fastify'
import type { Dispatcher } from 'undici'

/** Raised into undici when the client went away: the upstream request is cancelled. */
export class ClientClosedError extends Error {
  constructor () { super('client closed the connection') }
}

/** Raised into undici when the upstream's status is not an HTTP status (docs/routing.md "3. Forwarding"): answered 502. */
export class UpstreamStatusError extends Error {
  readonly code = 'GW_UPSTREAM_BAD_STATUS'
  constructor (readonly status: number) { super(`upstream answered with status ${status}`) }
}

/** Raised into undici when the client was cut off for reading nothing (SEND_TIMEOUT_MS). */
export class SendTimeoutError extends Error {
  constructor (readonly timeoutMs: number) { super(`client read nothing of the answer for ${timeoutMs} ms`) }
}

/** What the exchange needs from the forwarding stage at each turn. */
export interface ExchangeHooks {
  /**
   * The first response byte (or its end) is about to go to the client: write the upstream's
   * status and headers to the (hijacked) reply's response, with whatever the gateway adds.
   * Answers where the body is written: the response itself, or a filter that passes it on.
   */
  writeHead: (reply: FastifyReply, statusCode: number, headers: IncomingHttpHeaders) => Writable
  /**
   * The upstream failed after its headers arrived (a reset, a body timeout), while the
   * client was still there. `canAnswer`: nothing was sent yet, so an error answer still can be.
   */
  failedAfterStart: (err: Error, canAnswer: boolean) => void
  /** The response reached the client whole, through the hijacked reply: record it. */
  completed: (reply: FastifyReply) => void
  /** The attempt is over, however it ended (exactly once). */
  settled: () => void
  /**
   * The client read nothing of the answer for `sendTimeoutMs` and is about to be cut off
   * (its connection destroyed right after, the upstream request aborted): record why.
   */
  cutOff: (reply: FastifyReply, err: SendTimeoutError) => void
  /** SEND_TIMEOUT_MS. */
  sendTimeoutMs: number
}

/** True while the exchange writes from inside undici's parser (see resume). */
let writingFromParser = false

/** sink.write(chunk), or sink.end() for null, flagged as happening inside undici's parser. */
function writeFromParser (sink: Writable, chunk: Buffer | null): boolean {
  writingFromParser = true
  try {
    if (chunk === null) {
      sink.end()
      return true
    }
    return sink.write(chunk)
  } finally {
    writingFromParser = false
  }
}

/** libuv's count of bytes still to write on a socket: it shrinks as a slow reader takes even part of a chunk. */
interface SocketHandle { writeQueueSize?: number }

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
  /** Where the body goes once committed: the response, or the route's first body filter. */
  private sink: Writable | null = null
  private done = false
  /** The client went away (the upstream request is aborted as soon as undici hands over its controller). */
  clientGone = false
  /**
   * Send timeout (docs/upstreams.md "Slow readers: `SEND_TIMEOUT_MS`"), armed only while the client's socket is full: when the
   * upstream is paused for 'drain', or the answer's tail is still queued after the upstream ended.
   * One timer per exchange, refreshed at each wait, created at the first.
   */
  private sendTimer: NodeJS.Timeout | null = null
  private waitingForClient = false
  /** What the client's socket still had to write when last looked at: a change is progress. */
  private pendingBytes = 0
  /** Listening to the request's 'close' (an answer queued behind a pipelined one: see awaitClient). */
  private watchingRequest = false

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

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // undici itself refuses a 101 nobody asked for and a status that is not three digits.
    if (statusCode > 599) return controller.abort(new UpstreamStatusError(statusCode))
    this.statusCode = statusCode
    this.headers = headers
    this.resolveStarted(statusCode)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.committed) this.commit()
    const sink = this.sink as Writable
    if (!writeFromParser(sink, chunk)) {
      controller.pause()
      sink.once('drain', this.resume)
      this.awaitClient()
    }
  }

  onResponseEnd (): void {
    if (!this.committed) this.commit()
    const res = this.reply.raw
    writeFromParser(this.sink as Writable, null)
    this.settle()
    // The upstream is done, but a client reading nothing would still hold the answer's tail.
    if (res.socket !== null && res.socket.writableNeedDrain) this.awaitClient()
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
    this.sink = this.hooks.writeHead(reply, this.statusCode, this.headers as IncomingHttpHeaders)
  }

  private readonly resume = (): void => {
    this.waitingForClient = false
    // A write in onResponseData can emit 'drain' synchronously, also for another answer on the
    // same client connection (Node emits it for the response on the socket when a pipelined
    // one behind it writes). An undici parser is running then, and resuming any parser from
    // inside one fails undici's assertion: that resume waits for the next tick.
    if (writingFromParser) return void process.nextTick(resumeLater, this)
    this.resumeUpstream()
  }

  resumeUpstream (): void {
    // A 'drain' after the attempt ended must not reach undici: the request is gone.
    if (!this.done) this.controller?.resume()
  }

  /** The client's socket is full: from now on the client has sendTimeoutMs to take some of it. */
  private awaitClient (): void {
    const socket = this.reply.request.raw.socket
    if (socket.destroyed) return this.onClientClose()
    this.waitingForClient = true
    this.pendingBytes = pendingBytesOf(socket)
    if (this.sendTimer === null) {
      this.sendTimer = setTimeout(sendTimerFired, this.hooks.sendTimeoutMs, this)
      this.sendTimer.unref()
    } else {
      this.sendTimer.refresh()
    }
    // Node emits a response's 'close' only for the response on the socket; one queued behind
    // a pipelined response learns that the client left only from its request's 'close'.
    if (this.reply.raw.socket === null && !this.watchingRequest && !this.done) {
      this.watchingRequest = true
      this.reply.request.raw.once('close', this.onClientClose)
    }
  }

  /** sendTimeoutMs after the client's socket filled up (or after the last progress). */
  checkClient (): void {
    if (!this.waitingForClient || this.reply.raw.writableFinished) return
    const socket = this.reply.request.raw.socket
    if (socket.destroyed) return this.onClientClose()
    const pending = pendingBytesOf(socket)
    const progressed = pending < this.pendingBytes
    this.pendingBytes = pending
    if (progressed) {
      // It took something: slow, but reading.
      this.sendTimer?.refresh()
      return
    }
    const err = new SendTimeoutError(this.hooks.sendTimeoutMs)
    this.clientGone = true
    this.waitingForClient = false
    this.hooks.cutOff(this.reply, err)
    if (!this.done) this.controller?.abort(err)
    socket.destroy()
  }

  /**
   * Every response ends with 'close': after 'finish' when it completed, without it when cut.
   * Also a request's 'close' (see awaitClient), which comes when its body has been read too:
   * only a destroyed socket means the client is gone.
   */
  private readonly onClientClose = (): void => {
    const res = this.reply.raw
    // An HTTP/2 response reads as finished also when its stream was reset by the client.
    if (res.writableFinished && (res as { stream?: { aborted: boolean } }).stream?.aborted !== true) {
      this.stopSendTimer()
      if (this.committed) this.hooks.completed(this.reply)
      return
    }
    if (this.clientGone || !this.reply.request.raw.socket.destroyed) return
    this.clientGone = true
    this.stopSendTimer()
    if (!this.done) this.controller?.abort(new ClientClosedError())
  }

  private stopSendTimer (): void {
    this.waitingForClient = false
    if (this.sendTimer !== null) clearTimeout(this.sendTimer)
  }

  private settle (): void {
    if (this.done) return
    this.done = true
    if (this.watchingRequest) {
      this.watchingRequest = false
      this.reply.request.raw.off('close', this.onClientClose)
    }
    this.hooks.settled()
  }
}

function sendTimerFired (exchange: UpstreamExchange): void { exchange.checkClient() }

function resumeLater (exchange: UpstreamExchange): void { exchange.resumeUpstream() }

/** Bytes queued on the socket, in Node's buffer and in libuv's (which shrinks with partial writes). */
function pendingBytesOf (socket: Socket): number {
  return socket.writableLength + ((socket as Socket & { _handle?: SocketHandle | null })._handle?.writeQueueSize ?? 0)
}
