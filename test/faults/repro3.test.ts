import { connect } from 'node:net'
import t from 'tap'
import { adminHeaders, httpRequest, spawnGateway, startUpstream } from '../helper.js'

t.test('repro', async (t) => {
  const big = Buffer.alloc(32 * 1024 * 1024, 97)
  const upstream = await startUpstream(t, (req, res) => {
    res.writeHead(200, { 'content-length': big.length }); res.end(big)
  })
  let open = 0
  upstream.server.on('connection', (s) => { open++; s.on('close', () => open--) })
  const gateway = await spawnGateway(t, { SHUTDOWN_GRACE_MS: '5000' })
  const r = await httpRequest(`${gateway.url}/admin/routes`, { method: 'POST', headers: { ...adminHeaders, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'big', path: '/big', targets: [{ url: upstream.url, weight: 1 }] }) })
  t.equal(r.statusCode, 201)
  const s = connect(gateway.port, '127.0.0.1')
  s.on('error', () => {})
  s.pause()
  s.write('GET /big/x HTTP/1.1\r\nHost: x\r\n\r\nGET /big/x HTTP/1.1\r\nHost: x\r\n\r\nGET /big/x HTTP/1.1\r\nHost: x\r\n\r\n')
  await new Promise((r) => setTimeout(r, 3000))
  s.destroy()
  await new Promise((r) => setTimeout(r, 1000))
  const st = await httpRequest(`${gateway.url}/admin/status`, { headers: adminHeaders })
  console.log('open upstream sockets', open, JSON.stringify(st.json().targets))
  const logs = await httpRequest(`${gateway.url}/admin/audit/logs?eventType=request`, { headers: adminHeaders })
  console.log(JSON.stringify(logs.json()).slice(0, 3000))
  const at = Date.now()
  console.log('exit', await gateway.stop(), Date.now() - at)
})
