import { createHmac } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import { canonicalJson } from './config-diff.js'
import type { SecretBox } from './secret-box.js'

/**
 * How a configuration revision's content is stored (docs/config-history.md "Storage"): JSON,
 * gzipped, base64 — `gz.<base64>`; secrets sealed with SECRET_KEY when it is set
 * (`v1.…`, lib/secret-box.ts). Hashes are keyed (HMAC) so that a fingerprint of a weak JWT
 * secret cannot be tried against a dictionary by whoever reads the table.
 */
export class RevisionCodec {
  readonly #hashKey: string

  constructor (private readonly box: SecretBox | null, secretKey: string | null) {
    this.#hashKey = secretKey ?? 'gatehouse-config-revisions'
  }

  hash (text: string): string {
    return createHmac('sha256', this.#hashKey).update(text).digest('hex')
  }

  /** A short keyed hash of one item's secrets: a diff sees that they changed, never what they are. */
  fingerprint (secrets: unknown): string {
    return this.hash(canonicalJson(secrets)).slice(0, 24)
  }

  pack (value: unknown): string {
    return `gz.${gzipSync(JSON.stringify(value)).toString('base64')}`
  }

  unpack (text: string): unknown {
    if (!text.startsWith('gz.')) throw new Error('not a packed revision value')
    return JSON.parse(gunzipSync(Buffer.from(text.slice(3), 'base64')).toString('utf8'))
  }

  packSecrets (value: unknown): string {
    const packed = this.pack(value)
    return this.box === null ? packed : this.box.seal(packed)
  }

  /** Throws a message saying why when the secrets were sealed and SECRET_KEY is unset or another one. */
  unpackSecrets (text: string): unknown {
    if (text.startsWith('gz.')) return this.unpack(text)
    if (this.box === null) throw new Error('its secrets are sealed with a SECRET_KEY and SECRET_KEY is not set')
    return this.unpack(this.box.open(text))
  }
}
