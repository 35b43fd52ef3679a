import { connect } from 'node:net'
import t from 'tap'
import { adminHeaders, httpRequest, spawnGateway, startUpstream } from '../helper.js'

t.test('repro', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    req.resume()
    req.on('end', () => { res.end('ok') })
  })
  const gateway = await spawnGateway(t, {})
  const r = await httpRequest(`${gateway.url}/admin/routes`, { method: 'POST', headers: { ...adminHeaders, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'a', path: '/a', targets: [{ url: upstream.url, weight: 1 }] }) })
  t.equal(r.statusCode, 201)
  const sockets = []
  for (let i = 0; i < 130; i++) {
    const s = connect(gateway.port, '127.0.0.1')
    s.on('error', () => {})
    s.write('POST /a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789')
    sockets.push(s)
  }
  await new Promise((r) => setTimeout(r, 1500))
  sockets[128].destroy(); sockets[129].destroy()
  await new Promise((r) => setTimeout(r, 1000))
  console.log(gateway.stderr.join('\n').slice(0, 2000))
  for (const s of sockets) s.destroy()
})
