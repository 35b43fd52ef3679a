import t from 'tap'
import { httpRequest, startGateway } from '../helper.js'

t.test('a method the gateway never routes gets 404 JSON with the request id in header and body', async (t) => {
  const { url } = await startGateway(t)
  const response = await httpRequest(`${url}/anything`, { method: 'PROPFIND' as 'GET', headers: { 'x-request-id': 'dav-1' } })
  t.equal(response.statusCode, 404)
  t.equal(response.headers['x-request-id'], 'dav-1')
  t.same(response.json(), { statusCode: 404, error: 'Not Found', message: 'no endpoint PROPFIND /anything', requestId: 'dav-1' })
})
