import cluster, { type Worker } from 'node:cluster'

/**
 * Messages between the cluster primary and its workers (WORKERS > 1) over node:cluster's IPC
 * channel. Two kinds of exchange:
 * - call: a worker asks the primary to run a named operation (a rate-limit hit, a reset …) and
 *   waits for its value, at most `timeoutMs`;
 * - gather: a worker asks the primary to put a named query to every worker (itself included)
 *   and collect the answers; a worker that does not answer within the timeout is listed as
 *   unresponsive instead of holding the call up (a hung or dying worker must not hang admin calls).
 * Every message carries `gatehouse` so that other users of the channel are left alone.
 */

type Call = { id: number, op: string, args: unknown[] }
type Reply = { id: number, value?: unknown, error?: string }
/** Calls made during one turn of a worker's event loop travel together, and so do their replies. */
type CallsMessage = { gatehouse: 'calls', calls: Call[] }
type RepliesMessage = { gatehouse: 'replies', replies: Reply[] }
type QueryMessage = { gatehouse: 'query', id: number, name: string }
type AnswerMessage = { gatehouse: 'answer', id: number, value?: unknown, error?: string }
/** A worker tells the primary which queries it answers, once its app has registered them. */
type AnswersMessage = { gatehouse: 'answers', name: string }
type Message = CallsMessage | RepliesMessage | QueryMessage | AnswerMessage | AnswersMessage

function isMessage (value: unknown): value is Message {
  return typeof value === 'object' && value !== null && typeof (value as { gatehouse?: unknown }).gatehouse === 'string'
}

/** The name of the built-in call that gathers a query's answers from every worker. */
const GATHER = 'gather'

export interface WorkerAnswer<T> {
  workerId: number
  pid: number
  value: T
}

export interface Gathered<T> {
  /** One entry per worker that answered in time, by workerId. */
  answers: Array<WorkerAnswer<T>>
  /** Workers that were asked and did not answer in time (or failed to). */
  unresponsive: Array<{ workerId: number, pid: number }>
  primary: { pid: number, uptimeSeconds: number }
}

/** True in a node:cluster worker, whose primary can be asked (server.ts with WORKERS > 1). */
export function inClusterWorker (): boolean {
  return cluster.isWorker && typeof process.send === 'function'
}

interface Pending {
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  deadline: number
  op: string
}

/**
 * The worker's end. One per process (the IPC channel is process-wide): use primaryLink().
 * Timeouts are enforced by one sweeping interval rather than a timer per call, since a
 * rate-limit call is made on every limited request. Calls are sent once per event-loop turn
 * (setImmediate: after the turn's I/O callbacks), all in one message: under load one IPC
 * message carries the hits of every request read in that turn.
 */
export class PrimaryLink {
  private nextId = 0
  private readonly pending = new Map<number, Pending>()
  private readonly answerers = new Map<string, () => unknown>()
  private sweeper: NodeJS.Timeout | null = null
  private readonly sweepEveryMs: number
  private outgoing: Call[] = []
  private readonly flush = (): void => {
    const calls = this.outgoing
    this.outgoing = []
    this.send({ gatehouse: 'calls', calls }, calls)
  }

  constructor (sweepEveryMs = 10) {
    this.sweepEveryMs = sweepEveryMs
    process.on('message', this.onMessage)
  }

  /** Runs `op` in the primary; rejects after `timeoutMs` or when the primary cannot be reached. */
  async call<T> (op: string, args: unknown[], timeoutMs: number): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      const id = ++this.nextId
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, deadline: Date.now() + timeoutMs, op })
      if (this.sweeper === null) {
        // The check waits for setImmediate, after this turn's I/O: a reply already in the pipe
        // is read first, so a worker whose own event loop stalled does not time out answered calls.
        this.sweeper = setInterval(() => setImmediate(this.sweep), this.sweepEveryMs)
        this.sweeper.unref()
      }
      if (this.outgoing.length === 0) setImmediate(this.flush)
      this.outgoing.push({ id, op, args })
    })
  }

  /** Puts query `name` to every worker through the primary; waits for each at most `timeoutMs`. */
  async gather<T> (name: string, timeoutMs: number): Promise<Gathered<T>> {
    // The primary's own deadline is timeoutMs; this one only guards against a primary that is gone.
    return await this.call<Gathered<T>>(GATHER, [name, timeoutMs], timeoutMs + 1000)
  }

  /** Registers this worker's answer to query `name` and tells the primary it can be asked. */
  answer (name: string, answerer: () => unknown): void {
    this.answerers.set(name, answerer)
    this.send({ gatehouse: 'answers', name }, null)
  }

  stopAnswering (name: string): void {
    this.answerers.delete(name)
  }

  private send (message: Message, calls: Call[] | null): void {
    // With a callback, a closed channel is reported here instead of as an 'error' event on process.
    ;(process.send as NonNullable<typeof process.send>)(message, undefined, undefined, (err: Error | null) => {
      if (err === null || calls === null) return
      for (const { id } of calls) this.settle(id, undefined, `cannot reach the cluster primary: ${err.message}`)
    })
  }

  private settle (id: number, value: unknown, error: string | undefined): void {
    const pending = this.pending.get(id)
    if (pending === undefined) return
    this.pending.delete(id)
    if (error === undefined) pending.resolve(value)
    else pending.reject(new Error(error))
  }

  private readonly sweep = (): void => {
    const now = Date.now()
    for (const [id, pending] of this.pending) {
      if (pending.deadline <= now) this.settle(id, undefined, `the cluster primary did not answer "${pending.op}" in time`)
    }
    if (this.pending.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper)
      this.sweeper = null
    }
  }

  private readonly onMessage = (message: unknown): void => {
    if (!isMessage(message)) return
    if (message.gatehouse === 'replies') {
      for (const { id, value, error } of message.replies) this.settle(id, value, error)
    } else if (message.gatehouse === 'query') {
      void this.answerQuery(message)
    }
  }

  private async answerQuery ({ id, name }: QueryMessage): Promise<void> {
    const answerer = this.answerers.get(name)
    let reply: AnswerMessage
    try {
      if (answerer === undefined) throw new Error(`this worker does not answer "${name}"`)
      reply = { gatehouse: 'answer', id, value: await answerer() }
    } catch (err) {
      reply = { gatehouse: 'answer', id, error: (err as Error).message }
    }
    this.send(reply, null)
  }
}

let link: PrimaryLink | null = null

/** This worker's link to its primary (created on first use). */
export function primaryLink (): PrimaryLink {
  link ??= new PrimaryLink()
  return link
}

export type PrimaryOperation = (args: unknown[], worker: Worker) => unknown

/**
 * The primary's end: answers workers' calls with `operations` and runs gathers. Returns a
 * function that stops serving.
 */
export function servePrimaryOperations (operations: Record<string, PrimaryOperation>): () => void {
  /** Which queries each worker has said it answers. */
  const answering = new Map<Worker, Set<string>>()
  let nextQueryId = 0
  const waiting = new Map<number, { worker: Worker, done: (answer: AnswerMessage | null) => void }>()

  function reply (worker: Worker, replies: Reply[]): void {
    // A worker that exits meanwhile simply misses its replies.
    if (worker.isConnected()) worker.send({ gatehouse: 'replies', replies } satisfies RepliesMessage, undefined, () => {})
  }

  async function ask (worker: Worker, name: string, timeoutMs: number): Promise<AnswerMessage | null> {
    return await new Promise((resolve) => {
      const id = ++nextQueryId
      const timer = setTimeout(() => done(null), timeoutMs)
      const done = (answer: AnswerMessage | null): void => {
        clearTimeout(timer)
        waiting.delete(id)
        resolve(answer)
      }
      waiting.set(id, { worker, done })
      worker.send({ gatehouse: 'query', id, name } satisfies QueryMessage, undefined, (err: Error | null) => { if (err !== null) done(null) })
    })
  }

  async function gather (name: string, timeoutMs: number): Promise<Gathered<unknown>> {
    const asked = [...answering].filter(([worker, names]) => names.has(name) && worker.isConnected()).map(([worker]) => worker)
    const replies = await Promise.all(asked.map(async (worker) => await ask(worker, name, timeoutMs)))
    const gathered: Gathered<unknown> = {
      answers: [],
      unresponsive: [],
      primary: { pid: process.pid, uptimeSeconds: Math.floor(process.uptime()) }
    }
    asked.forEach((worker, i) => {
      const answer = replies[i]
      const who = { workerId: worker.id, pid: worker.process.pid as number }
      if (answer === null || answer.error !== undefined) gathered.unresponsive.push(who)
      else gathered.answers.push({ ...who, value: answer.value })
    })
    gathered.answers.sort((a, b) => a.workerId - b.workerId)
    return gathered
  }

  async function runLater (worker: Worker, id: number, pending: Promise<unknown>): Promise<void> {
    try {
      reply(worker, [{ id, value: await pending }])
    } catch (err) {
      reply(worker, [{ id, error: (err as Error).message }])
    }
  }

  /** Runs a worker's calls in order; the synchronous ones (rate-limit hits) answer in one message. */
  function run (worker: Worker, calls: Call[]): void {
    const replies: Reply[] = []
    for (const { id, op, args } of calls) {
      try {
        const value = op === GATHER ? gather(String(args[0]), Number(args[1])) : operation(op)(args, worker)
        if (value instanceof Promise) void runLater(worker, id, value)
        else replies.push({ id, value })
      } catch (err) {
        replies.push({ id, error: (err as Error).message })
      }
    }
    if (replies.length > 0) reply(worker, replies)
  }

  function operation (op: string): PrimaryOperation {
    const found = operations[op]
    if (found === undefined) throw new Error(`unknown cluster operation "${op}"`)
    return found
  }

  const onMessage = (worker: Worker, message: unknown): void => {
    if (!isMessage(message)) return
    switch (message.gatehouse) {
      case 'calls':
        run(worker, message.calls)
        break
      case 'answers': {
        const names = answering.get(worker) ?? new Set<string>()
        names.add(message.name)
        answering.set(worker, names)
        break
      }
      case 'answer': {
        const entry = waiting.get(message.id)
        if (entry?.worker === worker) entry.done(message)
        break
      }
    }
  }
  const onExit = (worker: Worker): void => {
    answering.delete(worker)
    for (const entry of waiting.values()) if (entry.worker === worker) entry.done(null)
  }

  cluster.on('message', onMessage)
  cluster.on('exit', onExit)
  return () => {
    cluster.off('message', onMessage)
    cluster.off('exit', onExit)
  }
}
