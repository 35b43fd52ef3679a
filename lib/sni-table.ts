import { createHash, createPrivateKey } from 'node:crypto'
import { createSecureContext, type SecureContext } from 'node:tls'

/** A certificate the HTTPS listener can serve: PEM chain and clear private key. */
export interface ServableCertificate {
  name: string
  cert: string
  key: string
  snis: readonly string[]
}

interface Built {
  version: string
  context: SecureContext
}

/**
 * Which certificate a TLS handshake gets (docs/tls.md "Which certificate a client gets"):
 * the exact SNI, else the one-label wildcard (`*.example.org` for `a.example.org`, not for
 * `a.b.example.org` nor `example.org`), else the default. One SecureContext per certificate
 * version, built when the certificate changes and reused by every handshake; lookups are two
 * map reads bounded by the stored SNIs — nothing is cached per name a client sends.
 */
export class SniTable {
  private exact = new Map<string, SecureContext>()
  private wildcard = new Map<string, SecureContext>()
  /** By certificate name: the context built for its current version. */
  private built = new Map<string, Built>()
  /** Contexts built since start: a test sees that an unchanged certificate is not rebuilt. */
  contextsBuilt = 0

  /**
   * `defaultKeyType` ("ec", "rsa" …): Node hands an SNI certificate to OpenSSL next to the
   * default one rather than instead of it, so a certificate of another key type than the
   * default's may lose to the default with clients that accept both; swap() reports those.
   */
  constructor (readonly defaultContext: SecureContext, private readonly defaultKeyType: string | undefined = undefined) {}

  /**
   * Installs a new set of certificates. Contexts of unchanged certificates are kept; a
   * certificate that cannot be built (e.g. a key that does not open) is left out and reported.
   */
  swap (certificates: readonly ServableCertificate[], failed: (name: string, err: Error) => void, otherKeyType: (name: string, keyType: string) => void = () => {}): void {
    const exact = new Map<string, SecureContext>()
    const wildcard = new Map<string, SecureContext>()
    const built = new Map<string, Built>()
    for (const certificate of certificates) {
      const version = versionOf(certificate)
      let entry = this.built.get(certificate.name)
      if (entry?.version !== version) {
        try {
          entry = { version, context: createSecureContext({ cert: certificate.cert, key: certificate.key }) }
          this.contextsBuilt++
          const keyType = createPrivateKey(certificate.key).asymmetricKeyType
          if (this.defaultKeyType !== undefined && keyType !== undefined && keyType !== this.defaultKeyType) otherKeyType(certificate.name, keyType)
        } catch (err) {
          failed(certificate.name, err as Error)
          continue
        }
      }
      built.set(certificate.name, entry)
      for (const sni of certificate.snis) {
        if (sni.startsWith('*.')) wildcard.set(sni.slice(2), entry.context)
        else exact.set(sni, entry.context)
      }
    }
    this.exact = exact
    this.wildcard = wildcard
    this.built = built
  }

  /** The context for a client's SNI; the default for none or no match. */
  select (servername: string | undefined): SecureContext {
    if (servername === undefined || servername === '') return this.defaultContext
    const name = servername.toLowerCase()
    const exact = this.exact.get(name)
    if (exact !== undefined) return exact
    const dot = name.indexOf('.')
    if (dot > 0) {
      const wildcard = this.wildcard.get(name.slice(dot + 1))
      if (wildcard !== undefined) return wildcard
    }
    return this.defaultContext
  }

  /** The callback node:tls calls on each handshake that carries an SNI. */
  readonly sniCallback = (servername: string, callback: (err: Error | null, context?: SecureContext) => void): void => {
    callback(null, this.select(servername))
  }
}

function versionOf (certificate: ServableCertificate): string {
  return createHash('sha256').update(certificate.cert).update('\0').update(certificate.key).digest('base64url')
}
