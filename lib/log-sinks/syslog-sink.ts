import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect, isIPv6, type Socket } from 'node:net'
import type { SendOutcome } from './batch-queue.js'
import { SINK_REQUEST_TIMEOUT_MS } from './http-post.js'
import type { LogEntry } from './log-entry.js'
import type { LineSender } from './line-sender.js'

/** local0.info: facility 16 × 8 + severity 6. */
const PRI = '<134>'
/** RFC 5424 header fields are printable US-ASCII without spaces. */
const unsafeField = /[^\x21-\x7e]/g

/**
 * One RFC 5424 message: `<134>1 TIMESTAMP HOSTNAME gatehouse PROCID MSGID - MSG`, the event
 * type ("request", "admin") as MSGID and the JSON line as MSG.
 */
export function syslogMessage (entry: LogEntry, hostname: string, procId: string): string {
  return `${PRI}1 ${new Date(entry.timeMs).toISOString()} ${hostname} gatehouse ${procId} ${entry.type.replace(unsafeField, '_').slice(0, 32) || '-'} - ${entry.line}`
}

/** syslog+udp: one datagram per message. syslog+tcp: RFC 6587 octet counting ("LEN SP MSG") on one kept connection. */
export function syslogSender (transport: 'udp' | 'tcp', host: string, port: number, hostname: string): LineSender {
  const procId = String(process.pid)
  const name = hostname.replace(unsafeField, '_').slice(0, 255) || '-'
  return transport === 'udp' ? udpSender(host, port, name, procId) : tcpSender(host, port, name, procId)
}

function udpSender (host: string, port: number, hostname: string, procId: string): LineSender {
  let socket: UdpSocket | null = null
  return {
    async send (batch: LogEntry[]): Promise<SendOutcome<LogEntry>> {
      socket ??= createSocket(isIPv6(host) ? 'udp6' : 'udp4').on('error', () => {}).unref()
      const udp = socket
      let refused = 0
      let error: string | null = null
      for (const entry of batch) {
        const message = Buffer.from(syslogMessage(entry, hostname, procId))
        await new Promise<void>((resolve) => {
          udp.send(message, port, host, (err) => {
            // A datagram that cannot be sent (too big, no route) will not be sent by trying again.
            if (err !== null) {
              refused++
              error = err.message
            }
            resolve()
          })
        })
      }
      return { retry: [], refused, error }
    },
    close: async () => { socket?.close() }
  }
}

function tcpSender (host: string, port: number, hostname: string, procId: string): LineSender {
  let socket: Socket | null = null
  let connected: Promise<Socket> | null = null

  const open = async (): Promise<Socket> => {
    if (socket !== null && !socket.destroyed) return socket
    connected ??= new Promise<Socket>((resolve, reject) => {
      const fresh = connect({ host, port, timeout: SINK_REQUEST_TIMEOUT_MS })
      fresh.once('connect', () => { socket = fresh; resolve(fresh) })
      fresh.once('timeout', () => { fresh.destroy(new Error(`connecting to ${host}:${port} timed out`)) })
      fresh.once('error', reject)
      fresh.on('error', () => {})
      fresh.once('close', () => { if (socket === fresh) socket = null })
      // The receiver never answers: anything it sends is read and ignored.
      fresh.resume()
    }).finally(() => { connected = null })
    return await connected
  }

  return {
    async send (batch: LogEntry[], signal: AbortSignal): Promise<SendOutcome<LogEntry>> {
      const tcp = await open()
      let frames = ''
      for (const entry of batch) {
        const message = syslogMessage(entry, hostname, procId)
        frames += `${Buffer.byteLength(message)} ${message}`
      }
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => { tcp.destroy(new Error('aborted')) }
        signal.addEventListener('abort', onAbort, { once: true })
        tcp.write(frames, (err) => {
          signal.removeEventListener('abort', onAbort)
          if (err !== null && err !== undefined) {
            tcp.destroy()
            reject(err)
          } else resolve()
        })
      })
      return { retry: [], refused: 0, error: null }
    },
    close: async () => {
      const tcp = socket as Socket | null
      if (tcp === null) return
      await new Promise<void>((resolve) => { tcp.end(resolve) })
      tcp.destroy()
    }
  }
}
