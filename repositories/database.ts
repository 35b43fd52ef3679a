import type { Generated, Insertable, Selectable } from 'kysely'

/**
 * Every table, as Kysely sees it. Columns are snake_case; booleans are integers and
 * timestamps ISO-8601 text so the same migrations run on SQLite and PostgreSQL.
 * Each table belongs to one repository module, the only place that writes SQL for it.
 */
export interface Database {
  routes: RoutesTable
  config_version: ConfigVersionTable
  settings: SettingsTable
  audit_log: AuditLogTable
  consumers: ConsumersTable
  api_keys: ApiKeysTable
  basic_credentials: BasicCredentialsTable
  filters: FiltersTable
  instances: InstancesTable
  cache_purges: CachePurgesTable
  config_revisions: ConfigRevisionsTable
  config_revision_blobs: ConfigRevisionBlobsTable
  config_revision_sections: ConfigRevisionSectionsTable
  certificates: CertificatesTable
  certificate_snis: CertificateSnisTable
  egress_rules: EgressRulesTable
}

export interface CachePurgesTable {
  id: Generated<number>
  /** null: every route. */
  route_id: string | null
  /** null: every path of the route. */
  path_prefix: string | null
  created_at: string
}

export interface RoutesTable {
  id: string
  name: string
  path: string
  enabled: number
  /** JSON of every other route field (targets, auth, rateLimit, …). */
  spec: string
  created_at: string
  updated_at: string
}
export type RouteRow = Selectable<RoutesTable>
export type NewRouteRow = Insertable<RoutesTable>

export interface ConfigVersionTable {
  id: number
  version: number
}

export interface SettingsTable {
  key: string
  value: string
}

export interface AuditLogTable {
  id: Generated<number>
  ts: string
  event_type: string
  request_id: string | null
  client_ip: string | null
  method: string | null
  path: string | null
  route_id: string | null
  consumer_id: string | null
  status: number | null
  outcome: string
  duration_ms: number | null
  bytes_in: number | null
  bytes_out: number | null
  user_agent: string | null
  detail: string | null
  /** W3C trace id (32 hex) of a request row; null for admin rows. */
  trace_id: string | null
}
export type AuditLogRow = Selectable<AuditLogTable>
export type NewAuditLogRow = Insertable<AuditLogTable>

export interface ConsumersTable {
  id: string
  name: string
  /** JSON {max, windowMs} or null. */
  rate_limit: string | null
  created_at: string
  updated_at: string
}
export type ConsumerRow = Selectable<ConsumersTable>

export interface ApiKeysTable {
  id: string
  consumer_id: string
  /** Hex SHA-256 of the whole key; the key itself is never stored. */
  key_hash: string
  /** The key's first characters, shown so people can tell keys apart. */
  prefix: string
  created_at: string
}
export type ApiKeyRow = Selectable<ApiKeysTable>

export interface BasicCredentialsTable {
  consumer_id: string
  username: string
  /** scrypt$N$r$p$salt$hash (lib/auth/password.ts). */
  password_hash: string
  created_at: string
  updated_at: string
}
export type BasicCredentialRow = Selectable<BasicCredentialsTable>

export interface FiltersTable {
  id: string
  /** "deny" | "allow" */
  action: string
  /** Canonical address or CIDR ("10.0.0.0/8"), or null for a path-only rule. */
  ip: string | null
  /** Path prefix without a trailing slash, or null for an IP-only rule. */
  path: string | null
  expires_at: string | null
  reason: string
  created_at: string
}
export type FilterRow = Selectable<FiltersTable>

export interface InstancesTable {
  instance_id: string
  host: string
  pid: number
  version: string
  started_at: string
  last_seen_at: string
  config_revision: number
  requests_per_second: number
  /** JSON of lib/timeseries.ts StoredSeries. */
  series: string | null
}
export type InstanceRow = Selectable<InstancesTable>
export type NewInstanceRow = Insertable<InstancesTable>
export interface ConfigRevisionsTable {
  revision: number
  ts: string
  /** Who made the change: "admin-token" today (per-user tokens later), "system" for the CONFIG_FILE at start or on SIGHUP. */
  actor: string
  /** "admin-api" | "config-import" | "rollback" | "config-file" */
  source: string
  /** JSON {created, updated, deleted}. */
  summary: string
}

export interface ConfigRevisionBlobsTable {
  /** SHA-256 (HMAC with SECRET_KEY when set) of the section's content: equal content, one blob. */
  id: string
  section: string
  /** gzip+base64 of JSON {items, fingerprints}: the section as GET /admin/config shows it. */
  document: string
  /** What a rollback needs beyond the document (hashes, keys): sealed with SECRET_KEY ("v1.…") or "gz.<gzip+base64>". */
  secrets: string
}

export interface ConfigRevisionSectionsTable {
  revision: number
  section: string
  blob_id: string
}

export interface CertificatesTable {
  id: string
  name: string
  /** PEM chain, leaf first. */
  cert: string
  /** PEM private key, sealed with SECRET_KEY (lib/secret-box.ts) when it is set, else in clear. */
  key: string
  created_at: string
  updated_at: string
}
export type CertificateRow = Selectable<CertificatesTable>

export interface CertificateSnisTable {
  /** Lower-case host name or `*.` wildcard; unique across certificates. */
  sni: string
  certificate_id: string
}

export interface EgressRulesTable {
  id: string
  /** "deny" | "allow" */
  action: string
  /** Lower-case host name or "*.suffix", or null for a cidr-only rule. */
  host: string | null
  /** Canonical address or CIDR, or null for a host-only rule. */
  cidr: string | null
  /** JSON array of port numbers; "[]": every port. */
  ports: string
  expires_at: string | null
  reason: string
  created_at: string
}
export type EgressRuleRow = Selectable<EgressRulesTable>
