/** One entry of LOG_SINKS, parsed (docs/logging.md "Sinks"). */
export type SinkSpec =
  | { kind: 'loki', origin: string, authorization: string | null }
  | { kind: 'elasticsearch', origin: string, index: string, authorization: string | null }
  | { kind: 'syslog', transport: 'udp' | 'tcp', host: string, port: number }
  | { kind: 'http', url: string, authorization: string | null }
  | { kind: 's3', bucket: string, prefix: string, endpoint: string | null, region: string | null }

/** Elasticsearch index names: lowercase, no \ / * ? " < > | space , # : and not starting with - _ +. */
const INDEX = /^(?![-_+])[^A-Z\\/*?"<>| ,#:]{1,255}$/

/** A sink URL → its spec; throws an Error whose message says what is wrong. */
export function parseSinkUrl (raw: string): SinkSpec {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new Error(`"${redactSinkUrl(raw)}" is not a URL`)
  }
  const scheme = url.protocol.slice(0, -1)
  const authorization = url.username === '' ? null : `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
  const origin = `http://${url.host}`
  switch (scheme) {
    case 'loki+http':
    case 'loki+https':
      return { kind: 'loki', origin: scheme.endsWith('s') ? `https://${url.host}` : origin, authorization }
    case 'elasticsearch+http':
    case 'elasticsearch+https': {
      const index = decodeURIComponent(url.pathname.replace(/^\/+|\/+$/g, ''))
      if (!INDEX.test(index)) throw new Error(`${redactSinkUrl(raw)}: the path must be one Elasticsearch index name (lowercase), like /gatehouse-access`)
      return { kind: 'elasticsearch', origin: scheme.endsWith('s') ? `https://${url.host}` : origin, index, authorization }
    }
    case 'syslog+udp':
    case 'syslog+tcp':
      if (url.hostname === '') throw new Error(`${raw}: a host is needed`)
      return { kind: 'syslog', transport: scheme === 'syslog+udp' ? 'udp' : 'tcp', host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port === '' ? 514 : Number(url.port) }
    case 'http':
    case 'https':
      return { kind: 'http', url: `${url.protocol}//${url.host}${url.pathname}${url.search}`, authorization }
    case 's3': {
      if (url.hostname === '') throw new Error(`${redactSinkUrl(raw)}: a bucket is needed (s3://bucket/prefix)`)
      const endpoint = url.searchParams.get('endpoint')
      if (endpoint !== null && !/^https?:\/\/[^/\s]+\/?$/.test(endpoint)) throw new Error(`${redactSinkUrl(raw)}: endpoint must be like http://host:port`)
      return { kind: 's3', bucket: url.hostname, prefix: url.pathname.replace(/^\/+|\/+$/g, ''), endpoint, region: url.searchParams.get('region') }
    }
    default:
      throw new Error(`"${redactSinkUrl(raw)}" has an unknown scheme "${scheme}:" (loki+http, elasticsearch+http, syslog+udp, syslog+tcp, http, https or s3)`)
  }
}

/** The URL as /admin/status and /metrics show it: a password (or any secret-looking query value) replaced by "***". */
export function redactSinkUrl (raw: string): string {
  return raw
    .replace(/^([a-z0-9+.-]+:\/\/[^/@:]*):[^/@]*@/i, '$1:***@')
    .replace(/([?&](?:password|secret|token|key|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&]*/gi, '$1***')
}
