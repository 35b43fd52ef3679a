import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'

const FORMAT = 'v1'

/**
 * Encrypts what the database keeps at rest with SECRET_KEY (docs/config-history.md "Secrets in
 * revisions"): AES-256-GCM, the key the SHA-256 of SECRET_KEY, a random 12-byte IV per value.
 * Sealed text: `v1.<iv>.<tag>.<ciphertext>`, each part base64url. open() throws on a value
 * sealed with another key or altered since (the GCM tag does not match).
 */
export class SecretBox {
  readonly #key: Buffer

  constructor (secretKey: string) {
    this.#key = createHash('sha256').update(secretKey, 'utf8').digest()
  }

  seal (plain: string): string {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv)
    const ciphertext = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()])
    return [FORMAT, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join('.')
  }

  open (sealed: string): string {
    const parts = sealed.split('.')
    if (parts.length !== 4 || parts[0] !== FORMAT) throw new Error('not a sealed value (expected v1.<iv>.<tag>.<ciphertext>)')
    const [, iv, tag, ciphertext] = parts
    const decipher = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(iv, 'base64url'))
    decipher.setAuthTag(Buffer.from(tag, 'base64url'))
    try {
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8')
    } catch {
      throw new Error('the sealed value does not open with this SECRET_KEY (another key, or altered)')
    }
  }
}
