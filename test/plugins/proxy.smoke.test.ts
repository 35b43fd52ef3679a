import t from 'tap'
import { createRoute, httpRequest, startGateway, startUpstream } from '../helper.js'

t.test('forwards a request to the route target and back', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'users', path: '/api/users', targets: [{ url: upstream.url, weight: 1 }] })
  const response = await httpRequest(`${url}/api/users/7?x=1`)
  t.equal(response.statusCode, 200)
  t.equal(response.json().url, '/api/users/7?x=1')
  t.equal(response.headers.via, '1.1 gatehouse')
})
