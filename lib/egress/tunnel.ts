import { connect, type Socket } from 'node:net'

/**
 * CONNECT tunnels (docs/egress.md "Tunnels"): raw bytes both ways between the client's socket
 * and a TCP connection to a checked address. Each direction is a relay (below), so a side that
 * reads slowly pauses the other (backpressure, no buffering beyond the sockets' own); a FIN
 * from one side ends only that direction (half-close), and the tunnel is gone once both
 * sockets have closed. A tunnel with no bytes either way for idleMs is closed. Per tunnel the
 * process holds the two sockets, six small listeners and one timer, nothing else.
 */
export interface TunnelEnd {
  /** Bytes from the client to the destination (the client's early bytes included). */
  bytesIn: number
  /** Bytes from the destination to the client. */
  bytesOut: number
  /** Why it ended: "closed" (both sides finished), "idle", "error: …", "shutdown". */
  how: string
}

export class ConnectError extends Error {
  constructor (message: string, readonly timedOut: boolean) {
    super(message)
    this.name = 'ConnectError'
  }
}

/**
 * Bytes from `from` to `to`: `from` pauses while `to` has a full write buffer and resumes on its
 * 'drain'; `from`'s FIN ends `to`'s writing side only. Three listeners instead of stream.pipe()'s
 * nine closures and state per direction: at 10,000 idle tunnels that difference is measurable
 * (docs/egress.md "Memory").
 */
function relay (from: Socket, to: Socket): void {
  from.on('data', (chunk: Buffer) => { if (!to.write(chunk)) from.pause() })
  to.on('drain', () => from.resume())
  from.on('end', () => to.end())
}

/** A TCP connection to the first of `addresses` that accepts one, tried in order. */
export async function connectToAny (addresses: readonly string[], port: number, timeoutMs: number): Promise<Socket> {
  let last: ConnectError = new ConnectError('no address to connect to', false)
  for (const address of addresses) {
    try {
      return await connectTo(address, port, timeoutMs)
    } catch (err) {
      last = err as ConnectError
    }
  }
  throw last
}

function connectTo (address: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port, allowHalfOpen: true, noDelay: true })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new ConnectError(`connecting to ${address}:${port} took longer than ${timeoutMs} ms`, true))
    }, timeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      socket.destroy()
      reject(new ConnectError(`${address}:${port}: ${err.code ?? err.message}`, false))
    })
  })
}

/**
 * Joins `client` (answered 200 already) and `upstream`; `head` is what the client sent after its
 * CONNECT request. `ended` is called once, after both sockets have closed.
 */
export function joinTunnel (client: Socket, upstream: Socket, head: Buffer, idleMs: number, ended: (end: TunnelEnd) => void): () => void {
  let how = 'closed'
  let open = 2
  const closed = (): void => {
    if (--open > 0) return
    ended({ bytesIn: upstream.bytesWritten, bytesOut: upstream.bytesRead, how })
  }
  const fail = (side: string) => (err: NodeJS.ErrnoException): void => {
    if (how === 'closed') how = `error: ${side} ${err.code ?? err.message}`
    client.destroy()
    upstream.destroy()
  }
  client.on('error', fail('client'))
  upstream.on('error', fail('destination'))
  client.on('close', () => { upstream.destroy(); closed() })
  upstream.on('close', () => { client.destroy(); closed() })
  client.setTimeout(idleMs, () => {
    how = 'idle'
    client.destroy()
    upstream.destroy()
  })
  upstream.setNoDelay(true)
  if (head.length > 0) upstream.write(head)
  relay(client, upstream)
  relay(upstream, client)
  client.resume()
  // Cuts the tunnel now (the shutdown grace period is over).
  return () => {
    if (how === 'closed') how = 'shutdown'
    client.destroy()
    upstream.destroy()
  }
}
