import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { connect as tlsConnect, type PeerCertificate } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, tempDir, type TestAppOptions, type TestContext } from './helper.js'

/** A certificate and key made with openssl, as PEM text and as files. */
export interface TestCertificate {
  cert: string
  key: string
  certFile: string
  keyFile: string
}

export interface CertificateOptions {
  /** Subject CN; also the first DNS name. */
  cn: string
  /** More DNS names (subjectAltName). */
  names?: string[]
  type?: 'ec' | 'rsa'
  days?: number
  /** Signed by this CA instead of self-signed. */
  ca?: TestCertificate
  /** A CA certificate (basicConstraints CA:TRUE). */
  isCa?: boolean
}

let serial = 0

function keyArgs (type: 'ec' | 'rsa'): string[] {
  return type === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048']
}

/** Makes a certificate with openssl in a fresh directory (removed at teardown). */
export function makeCertificate (t: TestContext, options: CertificateOptions): TestCertificate {
  const dir = tempDir(t)
  const id = `c${++serial}`
  const certFile = path.join(dir, `${id}.crt`)
  const keyFile = path.join(dir, `${id}.key`)
  const names = [options.cn, ...(options.names ?? [])].filter((name) => !name.includes(' '))
  const san = names.map((name) => /^[\d.]+$/.test(name) ? `IP:${name}` : `DNS:${name}`).join(',')
  const days = String(options.days ?? 30)
  const type = options.type ?? 'ec'
  if (options.ca === undefined) {
    const extensions = options.isCa === true
      ? ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']
      : ['-addext', `subjectAltName=${san}`]
    execFileSync('openssl', ['req', '-x509', ...keyArgs(type), '-nodes', '-keyout', keyFile, '-out', certFile,
      '-subj', `/CN=${options.cn}`, '-days', days, ...extensions], { stdio: 'ignore' })
  } else {
    const csrFile = path.join(dir, `${id}.csr`)
    const extFile = path.join(dir, `${id}.ext`)
    writeFileSync(extFile, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\n`)
    execFileSync('openssl', ['req', '-new', ...keyArgs(type), '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${options.cn}`], { stdio: 'ignore' })
    execFileSync('openssl', ['x509', '-req', '-in', csrFile, '-CA', options.ca.certFile, '-CAkey', options.ca.keyFile, '-CAcreateserial',
      '-out', certFile, '-days', days, '-extfile', extFile], { stdio: 'ignore' })
  }
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile }
}

export interface TlsGateway {
  app: FastifyInstance
  /** http://127.0.0.1:port of the plain listener. */
  url: string
  port: number
  /** https://127.0.0.1:port of the HTTPS listener. */
  tlsUrl: string
  tlsPort: number
  defaultCertificate: TestCertificate
}

/** A gateway with an HTTPS listener on a free port, its default certificate made here (CN gatehouse.test). */
export async function startTlsGateway (t: TestContext, options: TestAppOptions & { defaultCertificate?: TestCertificate } = {}): Promise<TlsGateway> {
  const defaultCertificate = options.defaultCertificate ?? makeCertificate(t, { cn: 'gatehouse.test' })
  const app = await buildTestApp(t, {
    ...options,
    env: { TLS_PORT: '0', TLS_CERT_FILE: defaultCertificate.certFile, TLS_KEY_FILE: defaultCertificate.keyFile, ...options.env }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const tlsPort = await (app.tlsListener as NonNullable<FastifyInstance['tlsListener']>).listen('127.0.0.1', 0)
  return { app, url: `http://127.0.0.1:${port}`, port, tlsUrl: `https://127.0.0.1:${tlsPort}`, tlsPort, defaultCertificate }
}

/** The certificate a TLS handshake with `servername` (none when undefined) is answered with. */
export async function servedCertificate (port: number, servername?: string): Promise<PeerCertificate> {
  return await new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const certificate = socket.getPeerCertificate()
      socket.end()
      resolve(certificate)
    })
    socket.on('error', reject)
  })
}

/** The SHA-256 fingerprint of a PEM certificate, as Node's getPeerCertificate().fingerprint256 and the admin API show it. */
export function fingerprintOf (cert: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: cert }).toString().trim().split('=')[1]
}
