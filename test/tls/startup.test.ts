import { writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { Agent } from 'undici'
import { ConfigError, loadConfig } from '../../plugins/config.js'
import { httpRequest, type HttpRequestOptions, spawnGateway, tempDir, freePort } from '../helper.js'
import { makeCertificate } from '../tls-helper.js'

/** TLS_PORT, TLS_CERT_FILE, TLS_KEY_FILE, SECRET_KEY at start-up (docs/tls.md "Settings"). */

t.test('invalid TLS settings are refused naming the variable', async (t) => {
  const good = makeCertificate(t, { cn: 'a.test' })
  const other = makeCertificate(t, { cn: 'b.test' })
  const dir = tempDir(t)
  const garbage = path.join(dir, 'garbage.pem')
  writeFileSync(garbage, 'not a pem')
  const problem = (env: Record<string, string>): string => {
    try {
      loadConfig(env)
      return 'accepted'
    } catch (err) {
      t.ok(err instanceof ConfigError)
      return (err as Error).message
    }
  }
  t.match(problem({ TLS_PORT: '8443' }), /^TLS_CERT_FILE: is required/)
  t.match(problem({ TLS_PORT: '8443', TLS_CERT_FILE: good.certFile }), /^TLS_KEY_FILE: is required/)
  t.match(problem({ TLS_PORT: '8443', TLS_CERT_FILE: path.join(dir, 'missing.pem'), TLS_KEY_FILE: good.keyFile }), /^TLS_CERT_FILE: cannot read .*ENOENT/)
  t.match(problem({ TLS_PORT: '8443', TLS_CERT_FILE: garbage, TLS_KEY_FILE: good.keyFile }), /^TLS_CERT_FILE: .* is not a PEM certificate/)
  t.match(problem({ TLS_PORT: '8443', TLS_CERT_FILE: good.certFile, TLS_KEY_FILE: garbage }), /^TLS_KEY_FILE: .* is not a PEM private key/)
  t.match(problem({ TLS_PORT: '8443', TLS_CERT_FILE: good.certFile, TLS_KEY_FILE: other.keyFile }), /^TLS_KEY_FILE: .* does not match the certificate/)
  t.match(problem({ TLS_PORT: 'https', TLS_CERT_FILE: good.certFile, TLS_KEY_FILE: good.keyFile }), /^TLS_PORT: must be a whole number/)
  t.match(problem({ SECRET_KEY: 'short' }), /^SECRET_KEY: must be at least 16 characters/)
  const config = loadConfig({ TLS_PORT: '8443', TLS_CERT_FILE: good.certFile, TLS_KEY_FILE: good.keyFile, SECRET_KEY: 'sixteen-chars-ok' })
  t.equal(config.tlsPort, 8443)
  t.equal(config.tlsDefault?.cert, good.cert)
  t.equal(config.secretKey, 'sixteen-chars-ok')
  t.equal(loadConfig({}).tlsPort, null, 'no TLS_PORT: no HTTPS listener (the files are not read)')
})

t.test('the process stops with exit 1 naming the variable', async (t) => {
  const gateway = await spawnGateway(t, { TLS_PORT: String(await freePort()), TLS_CERT_FILE: '/nonexistent/cert.pem', TLS_KEY_FILE: '/nonexistent/key.pem' }, { waitForHealth: false })
  t.equal(await gateway.exited, 1)
  t.match(gateway.stderr.join('\n'), /invalid setting TLS_CERT_FILE: cannot read "\/nonexistent\/cert.pem"/)
})

t.test('WORKERS=2: every worker serves the HTTPS listener; SECRET_KEY unset is warned about', async (t) => {
  const certificate = makeCertificate(t, { cn: 'gatehouse.test' })
  const tlsPort = await freePort()
  const gateway = await spawnGateway(t, { WORKERS: '2', TLS_PORT: String(tlsPort), TLS_CERT_FILE: certificate.certFile, TLS_KEY_FILE: certificate.keyFile }, { startTimeoutMs: 60_000 })
  await gateway.waitForLine(/SECRET_KEY is unset/)
  const insecure = new Agent({ connect: { rejectUnauthorized: false }, pipelining: 0 })
  t.teardown(() => insecure.close())
  // New connections each time: the primary spreads them over the workers.
  for (let i = 0; i < 20; i++) {
    const status = await httpRequest(`https://127.0.0.1:${tlsPort}/admin/status`, { dispatcher: insecure, headers: { authorization: 'Bearer test-admin-token-0123456789', connection: 'close' } } as unknown as HttpRequestOptions)
    t.equal(status.statusCode, 200)
  }
  t.equal(await gateway.stop(), 0)
})
