import { hostname } from 'node:os'
import path from 'node:path'
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import t from 'tap'
import S3rver from 's3rver'
import { createRoute, freePort, httpRequest, startGateway, startUpstream, tempDir } from '../helper.js'

t.test('each rotated access-log file is uploaded when its rotation ends, the current one at shutdown (s3rver, AWS SDK client)', async (t) => {
  // s3rver's fixed key pair; the gateway's S3 client reads the usual AWS_* variables.
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY }
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER'
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER'
  t.teardown(() => {
    if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID
    else process.env.AWS_ACCESS_KEY_ID = saved.id
    if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY
    else process.env.AWS_SECRET_ACCESS_KEY = saved.secret
  })
  const port = await freePort()
  const s3 = new S3rver({ address: '127.0.0.1', port, silent: true, directory: tempDir(t), configureBuckets: [{ name: 'logs', configs: [] }] })
  await s3.run()
  t.teardown(async () => { await s3.close() })
  const endpoint = `http://127.0.0.1:${port}`
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
  t.teardown(() => { client.destroy() })
  const list = async (): Promise<string[]> => ((await client.send(new ListObjectsV2Command({ Bucket: 'logs' }))).Contents ?? []).map((object) => object.Key as string).sort()
  const read = async (key: string): Promise<string> => await (await client.send(new GetObjectCommand({ Bucket: 'logs', Key: key }))).Body?.transformToString() ?? ''

  const dir = tempDir(t)
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, {
    env: {
      ACCESS_LOG_FILE: path.join(dir, 'access.log'),
      ACCESS_LOG_ROTATE_BYTES: '2000',
      ACCESS_LOG_KEEP: '2',
      LOG_SINKS: `s3://logs/gateway/eu?endpoint=${endpoint}&region=us-east-1`
    },
    build: { logShipping: { firstRetryMs: 50, maxRetryDelayMs: 200 } }
  })
  await createRoute(app, { name: 's3', path: '/s3', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 30; i++) t.equal((await httpRequest(`${url}/s3/${i}`, { headers: { 'x-request-id': `s3-${i}` } })).statusCode, 200)

  const deadline = Date.now() + 15_000
  while ((await list()).length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
  const rotated = await list()
  t.ok(rotated.length >= 3, `rotated files uploaded while running: ${rotated.length}`)
  for (const key of rotated) t.match(key, new RegExp(`^gateway/eu/${hostname()}/access\\.log\\.\\d{8}T\\d{6}\\.\\d{3}Z$`), key)

  await app.close()
  const all = await list()
  t.equal(all.length, rotated.length + 1, 'the current file uploaded at shutdown')
  // Keys sort by rotation time: together they hold every line once, in order — more than the two files kept on disk.
  const ids: string[] = []
  for (const key of all) ids.push(...(await read(key)).split('\n').filter(Boolean).map((line) => JSON.parse(line).reqId as string))
  const ours = ids.filter((id) => id.startsWith('s3-'))
  t.same(ours, Array.from({ length: 30 }, (_v, i) => `s3-${i}`), 'every line once, in order')
  const status = app.logShipping.status()[0]
  t.match(status, { sink: `s3://logs/gateway/eu?endpoint=${endpoint}&region=us-east-1`, queued: 0, dropped: 0, sent: all.length })
})
