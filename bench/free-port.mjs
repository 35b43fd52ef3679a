import { createServer } from 'node:net'

/** A port free on 127.0.0.1 right now (the bench's processes are told which to listen on). */
export async function freePort () {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}
