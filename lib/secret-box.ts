import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'

/**
 * Secrets at rest (SECRET_KEY): AES-256-GCM with a key derived as sha256(SECRET_KEY).
 * Sealed format: `v1.<iv>.<tag>.<ciphertext>`, each part base64url. A sealed value opened with
 * another key, or altered, fails authentication and throws.
 */
export class SecretBox {
  private readonly key: Buffer

  constructor (secretKey: string) {
    this.key = createHash('sha256').update(secretKey, 'utf8').digest()
  }

  seal (plain: string): string {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.key, iv)
    const ciphertext = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()])
    return `v1.${iv.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}.${ciphertext.toString('base64url')}`
  }

  open (sealed: string): string {
    const parts = sealed.split('.')
    if (parts.length !== 4 || parts[0] !== 'v1') throw new Error('not a sealed secret (expected v1.<iv>.<tag>.<ciphertext>)')
    const [, iv, tag, ciphertext] = parts
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'))
    decipher.setAuthTag(Buffer.from(tag, 'base64url'))
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8')
  }
}
