// The protocols bench's WebSocket upstream: a ws echo server. Prints {"port":N} once listening.
import { WebSocketServer } from 'ws'

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0), maxPayload: 64 * 1024 * 1024 })
wss.on('connection', (socket) => { socket.on('message', (data, binary) => socket.send(data, { binary })) })
wss.on('listening', () => { console.log(JSON.stringify({ port: wss.address().port })) })
process.on('SIGTERM', () => process.exit(0))
