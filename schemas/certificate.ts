import { Type, type Static } from '@sinclair/typebox'
import { NamePattern } from './common.js'
import { defaultsOptional } from './defaults.js'

const EXAMPLE_CERT = '-----BEGIN CERTIFICATE-----\nMIIBhTCCASugAwIBAgIU…\n-----END CERTIFICATE-----\n'
const EXAMPLE_KEY = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49…\n-----END PRIVATE KEY-----\n'

const certificateFields = {
  name: Type.String({ pattern: NamePattern, maxLength: 100, examples: ['api-example-com'] }),
  cert: Type.String({ minLength: 1, maxLength: 65_536, description: 'PEM certificate chain, leaf first', examples: [EXAMPLE_CERT] }),
  snis: Type.Array(Type.String({ minLength: 1, maxLength: 253 }), {
    maxItems: 100,
    default: [],
    description: 'host names served with this certificate: exact ("api.example.com") or one-label wildcard ("*.example.org"); each belongs to one certificate',
    examples: [['api.example.com', '*.example.org']]
  })
}

/** POST and PUT body: the key is write-only. */
export const CertificateInputSchema = defaultsOptional(Type.Object({
  ...certificateFields,
  key: Type.String({ minLength: 1, maxLength: 65_536, writeOnly: true, description: 'PEM private key of the certificate (never shown in answers)', examples: [EXAMPLE_KEY] })
}, { additionalProperties: false, $id: 'CertificateInput' }))
export type CertificateInput = Static<typeof CertificateInputSchema>

/** What answers show: never the key. subject, notBefore, notAfter and fingerprint are read from the certificate. */
export const CertificateSchema = Type.Object({
  id: Type.String(),
  ...certificateFields,
  subject: Type.String({ examples: ['CN=api.example.com'] }),
  notBefore: Type.String({ format: 'date-time' }),
  notAfter: Type.String({ format: 'date-time' }),
  fingerprint: Type.String({ description: 'SHA-256 of the certificate (DER), colon-separated hex', examples: ['3A:9F:…'] }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' })
}, { $id: 'Certificate' })
export type Certificate = Static<typeof CertificateSchema>

/**
 * One certificate in the /admin/config document. Exported without its key; on import, a
 * certificate that already exists (same name) keeps its stored key unless one is given, and
 * a new certificate needs one.
 */
export const CertificateConfigItemSchema = defaultsOptional(Type.Object({
  id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._:-]+$', maxLength: 200 })),
  ...certificateFields,
  key: Type.Optional(CertificateInputSchema.properties.key),
  subject: Type.Optional(Type.String()),
  notBefore: Type.Optional(Type.String()),
  notAfter: Type.Optional(Type.String()),
  fingerprint: Type.Optional(Type.String()),
  createdAt: Type.Optional(Type.String()),
  updatedAt: Type.Optional(Type.String())
}, { additionalProperties: false }))
export type CertificateConfigItem = Static<typeof CertificateConfigItemSchema>
