import { randomBytes } from 'node:crypto'

/**
 * Where the frames of one direction of a tunnel begin and end (RFC 6455 5.2), read from the
 * headers only — payloads pass untouched. The gateway closing a tunnel (idle, route gone,
 * shutdown) may then send each side a Close frame, but only between two frames: never inside
 * one the other side is still sending.
 */
export class FrameBoundary {
  /** Payload bytes of the current frame still to come. */
  private remaining = 0
  /** The start of a frame header split across chunks. */
  private partial: Buffer | null = null

  get atBoundary (): boolean {
    return this.remaining === 0 && this.partial === null
  }

  feed (chunk: Buffer): void {
    let offset = 0
    while (offset < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - offset)
        this.remaining -= take
        offset += take
        continue
      }
      const carried = this.partial?.length ?? 0
      const head = this.partial === null ? chunk.subarray(offset) : Buffer.concat([this.partial, chunk.subarray(offset)])
      const size = headerSize(head)
      if (size === null || head.length < size) {
        this.partial = Buffer.from(head)
        return
      }
      this.partial = null
      this.remaining = payloadLength(head)
      offset += size - carried
    }
  }
}

/** Header bytes of the frame starting `head`, or null while too few bytes arrived to tell. */
function headerSize (head: Buffer): number | null {
  if (head.length < 2) return null
  const masked = (head[1] & 0x80) !== 0
  const length7 = head[1] & 0x7f
  return 2 + (length7 === 126 ? 2 : length7 === 127 ? 8 : 0) + (masked ? 4 : 0)
}

function payloadLength (head: Buffer): number {
  const length7 = head[1] & 0x7f
  if (length7 === 126) return head.readUInt16BE(2)
  if (length7 === 127) return Number(head.readBigUInt64BE(2))
  return length7
}

/** A Close frame (RFC 6455 5.5.1): `masked` for frames sent to a server, as a client must. */
export function closeFrame (code: number, reason: string, masked: boolean): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason.slice(0, 120)))
  payload.writeUInt16BE(code, 0)
  payload.write(reason.slice(0, 120), 2)
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload])
  const mask = randomBytes(4)
  for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4]
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), mask, payload])
}

/** 1001 Going Away: the gateway ends the tunnel (idle, route removed, shutdown). */
export const GOING_AWAY = 1001
