import { createPrivateKey, X509Certificate } from 'node:crypto'

/** What the admin API shows of a certificate, derived from its PEM (docs/tls.md "Certificates"). */
export interface CertificateFacts {
  subject: string
  notBefore: string
  notAfter: string
  /** SHA-256 of the DER, upper-case hex pairs separated by ':' (as openssl and browsers show it). */
  fingerprint: string
}

export class CertificateProblem extends Error {
  constructor (readonly field: 'cert' | 'key', problem: string) {
    super(`${field}: ${problem}`)
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/**
 * Checks a certificate chain and its private key: the PEM parses (the leaf first, then any
 * intermediates), the key parses, and the key belongs to the leaf. Throws CertificateProblem
 * naming the field; returns the leaf's facts.
 */
export function checkCertificatePair (cert: string, key: string): CertificateFacts {
  const blocks = cert.match(PEM_CERTIFICATE)
  if (blocks === null) throw new CertificateProblem('cert', 'is not a PEM certificate (-----BEGIN CERTIFICATE-----)')
  let leaf: X509Certificate
  try {
    leaf = new X509Certificate(blocks[0])
    for (const block of blocks.slice(1)) void new X509Certificate(block)
  } catch (err) {
    throw new CertificateProblem('cert', `does not parse: ${(err as Error).message}`)
  }
  let privateKey
  try {
    privateKey = createPrivateKey(key)
  } catch (err) {
    throw new CertificateProblem('key', `is not a PEM private key (an encrypted key is not accepted): ${(err as Error).message}`)
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new CertificateProblem('key', 'does not match the certificate')
  return factsOf(leaf)
}

export function certificateFacts (cert: string): CertificateFacts {
  const blocks = cert.match(PEM_CERTIFICATE)
  return factsOf(new X509Certificate(blocks === null ? cert : blocks[0]))
}

function factsOf (leaf: X509Certificate): CertificateFacts {
  return {
    subject: leaf.subject.split('\n').join(', '),
    notBefore: new Date(leaf.validFrom).toISOString(),
    notAfter: new Date(leaf.validTo).toISOString(),
    fingerprint: leaf.fingerprint256
  }
}

/** An SNI as the admin API accepts it: a lower-case host name, or `*.` and a name of at least two labels. */
const SNI = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/

/** null when valid, else why not. */
export function sniProblem (sni: string): string | null {
  if (sni.length > 253) return 'is longer than 253 characters'
  if (!SNI.test(sni)) return 'must be a lower-case host name with at least one dot, or "*." and such a name (one-label wildcard); no IP addresses, ports or other "*"'
  if (/^[\d.]+$/.test(sni)) return 'must be a host name, not an IP address'
  return null
}
