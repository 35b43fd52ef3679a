import t from 'tap'
import { closeFrame, FrameBoundary } from '../../lib/websocket-frames.js'

function frame (payloadLength: number, masked: boolean): Buffer {
  const lengthBytes = payloadLength < 126 ? [payloadLength] : payloadLength < 65_536 ? [126, payloadLength >> 8, payloadLength & 0xff] : [127, 0, 0, 0, 0, (payloadLength >>> 24) & 0xff, (payloadLength >> 16) & 0xff, (payloadLength >> 8) & 0xff, payloadLength & 0xff]
  lengthBytes[0] |= masked ? 0x80 : 0
  return Buffer.concat([Buffer.from([0x82, ...lengthBytes]), masked ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0), Buffer.alloc(payloadLength, 9)])
}

t.test('frame boundaries are found whatever the chunking', async (t) => {
  const stream = Buffer.concat([frame(5, false), frame(300, true), frame(70_000, false), frame(0, true)])
  for (const size of [1, 2, 3, 7, 64, 1000, stream.length]) {
    const frames = new FrameBoundary()
    const boundaries: number[] = []
    for (let offset = 0; offset < stream.length; offset += size) {
      frames.feed(stream.subarray(offset, offset + size))
      if (frames.atBoundary) boundaries.push(Math.min(offset + size, stream.length))
    }
    t.equal(boundaries.at(-1), stream.length, `chunks of ${size}: ends at a boundary`)
    // Inside the 70,000-byte frame there is never a boundary.
    const inside = boundaries.filter((at) => at > 5 + 2 + 4 + 300 + 4 && at < 5 + 2 + 4 + 300 + 10 + 70_000 + 2)
    t.same(inside, [], `chunks of ${size}: none inside a frame`)
  }
})

t.test('close frames: unmasked to clients, masked to servers', async (t) => {
  const toClient = closeFrame(1001, 'route deleted', false)
  t.same([...toClient.subarray(0, 4)], [0x88, 15, 0x03, 0xe9])
  t.equal(toClient.subarray(4).toString(), 'route deleted')
  const toServer = closeFrame(1001, 'bye', true)
  t.equal(toServer[0], 0x88)
  t.equal(toServer[1], 0x80 | 5)
  const mask = toServer.subarray(2, 6)
  const payload = Buffer.from(toServer.subarray(6).map((byte, i) => byte ^ mask[i % 4]))
  t.equal(payload.readUInt16BE(0), 1001)
  t.equal(payload.subarray(2).toString(), 'bye')
})
