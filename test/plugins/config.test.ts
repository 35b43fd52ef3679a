import t from 'tap'
import { ConfigError, envFileAdditions, loadConfig } from '../../plugins/config.js'

t.test('defaults are the README Configuration table', async (t) => {
  t.same(loadConfig({}), {
    port: 8080,
    host: '0.0.0.0',
    databaseUrl: 'sqlite:./data/gatehouse.db',
    adminToken: null,
    adminAuthMaxFailures: 30,
    adminCorsOrigins: [],
    redisUrl: null,
    redisTimeoutMs: 100,
    trustProxy: false,
    workers: 1,
    logLevel: 'info',
    bodyLimit: 10_485_760,
    upstreamTimeoutMs: 30_000,
    rateLimitMax: null,
    rateLimitWindowMs: 60_000,
    corsOrigins: null,
    auditRetentionDays: 30,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 60_000,
    keepAliveTimeoutMs: 72_000,
    maxConnections: 10_000,
    sendTimeoutMs: 60_000,
    shutdownDelayMs: 0,
    shutdownGraceMs: 25_000,
    serverTiming: true,
    cacheMemoryBytes: 67_108_864,
    accessLogFile: null,
    accessLogRotateBytes: 104_857_600,
    accessLogKeep: 10,
    logSinks: [],
    logSinkQueue: 10_000,
    otlpEndpoint: null,
    tracesSamplerRatio: 1,
    otelServiceName: 'gatehouse',
    secretKey: null,
    configRevisionsKeep: 1000,
    configFile: null,
    tlsPort: null,
    tlsDefault: null,
    egressPort: null,
    egressAuth: 'basic',
    egressDefault: 'allow',
    egressMaxConnections: 10_000,
    egressIdleTimeoutMs: 300_000,
    egressCache: false
  })
})

t.test('CACHE_MEMORY_BYTES is a whole number of bytes', async (t) => {
  t.equal(loadConfig({ CACHE_MEMORY_BYTES: '1048576' }).cacheMemoryBytes, 1_048_576)
  t.equal(loadConfig({ CACHE_MEMORY_BYTES: '0' }).cacheMemoryBytes, 0)
  t.throws(() => loadConfig({ CACHE_MEMORY_BYTES: '64MB' }), { name: 'ConfigError', message: /^CACHE_MEMORY_BYTES: must be a whole number/ })
})

t.test('the config is frozen and loadConfig never reads process.env', async (t) => {
  process.env.PORT = '1234'
  t.teardown(() => { delete process.env.PORT })
  const config = loadConfig({})
  t.equal(config.port, 8080)
  t.ok(Object.isFrozen(config))
})

t.test('every variable is read', async (t) => {
  const config = loadConfig({
    PORT: '9000',
    HOST: '127.0.0.1',
    DATABASE_URL: 'postgres://gatehouse@db/gatehouse',
    ADMIN_TOKEN: 'a-long-enough-admin-token',
    ADMIN_AUTH_MAX_FAILURES: '5',
    ADMIN_CORS_ORIGINS: 'https://dash.example.com, http://localhost:5173',
    REDIS_URL: 'redis://127.0.0.1:6379/2',
    REDIS_TIMEOUT_MS: '250',
    TRUST_PROXY: '10.0.0.0/8, 192.168.1.7,2001:db8::/32',
    WORKERS: '4',
    LOG_LEVEL: 'warn',
    BODY_LIMIT: '1024',
    UPSTREAM_TIMEOUT_MS: '5000',
    RATE_LIMIT_MAX: '100',
    RATE_LIMIT_WINDOW_MS: '1000',
    CORS_ORIGINS: 'https://app.example.com, http://localhost:3000',
    AUDIT_RETENTION_DAYS: '7',
    HEADERS_TIMEOUT_MS: '2000',
    REQUEST_TIMEOUT_MS: '3000',
    KEEP_ALIVE_TIMEOUT_MS: '4000',
    MAX_CONNECTIONS: '20',
    SEND_TIMEOUT_MS: '4500',
    SHUTDOWN_DELAY_MS: '5000',
    SHUTDOWN_GRACE_MS: '6000',
    SERVER_TIMING: 'false',
    CACHE_MEMORY_BYTES: '1048576',
    ACCESS_LOG_FILE: '/var/log/gatehouse/access.log',
    ACCESS_LOG_ROTATE_BYTES: '0',
    ACCESS_LOG_KEEP: '3',
    LOG_SINKS: 'loki+http://loki:3100, s3://logs/gatehouse?endpoint=http://minio:9000&region=eu-west-1',
    LOG_SINK_QUEUE: '500',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
    OTEL_TRACES_SAMPLER_ARG: '0.25',
    OTEL_SERVICE_NAME: 'edge',
    SECRET_KEY: 'a-secret-key-of-enough-length',
    CONFIG_REVISIONS_KEEP: '50',
    CONFIG_FILE: './gatehouse.yaml',
    EGRESS_PORT: '3128',
    EGRESS_AUTH: 'none',
    EGRESS_DEFAULT: 'deny',
    EGRESS_MAX_CONNECTIONS: '30',
    EGRESS_IDLE_TIMEOUT_MS: '7000',
    EGRESS_CACHE: 'true'
  })
  t.same(config, {
    port: 9000,
    host: '127.0.0.1',
    databaseUrl: 'postgres://gatehouse@db/gatehouse',
    adminToken: 'a-long-enough-admin-token',
    adminAuthMaxFailures: 5,
    adminCorsOrigins: ['https://dash.example.com', 'http://localhost:5173'],
    redisUrl: 'redis://127.0.0.1:6379/2',
    redisTimeoutMs: 250,
    trustProxy: ['10.0.0.0/8', '192.168.1.7', '2001:db8::/32'],
    workers: 4,
    logLevel: 'warn',
    bodyLimit: 1024,
    upstreamTimeoutMs: 5000,
    rateLimitMax: 100,
    rateLimitWindowMs: 1000,
    corsOrigins: ['https://app.example.com', 'http://localhost:3000'],
    auditRetentionDays: 7,
    headersTimeoutMs: 2000,
    requestTimeoutMs: 3000,
    keepAliveTimeoutMs: 4000,
    maxConnections: 20,
    sendTimeoutMs: 4500,
    shutdownDelayMs: 5000,
    shutdownGraceMs: 6000,
    serverTiming: false,
    cacheMemoryBytes: 1_048_576,
    accessLogFile: '/var/log/gatehouse/access.log',
    accessLogRotateBytes: 0,
    accessLogKeep: 3,
    logSinks: ['loki+http://loki:3100', 's3://logs/gatehouse?endpoint=http://minio:9000&region=eu-west-1'],
    logSinkQueue: 500,
    otlpEndpoint: 'http://collector:4318',
    tracesSamplerRatio: 0.25,
    otelServiceName: 'edge',
    secretKey: 'a-secret-key-of-enough-length',
    configRevisionsKeep: 50,
    configFile: './gatehouse.yaml',
    // TLS_PORT and its files: test/tls/startup.test.ts (they need real certificate files).
    tlsPort: null,
    tlsDefault: null,
    egressPort: 3128,
    egressAuth: 'none',
    egressDefault: 'deny',
    egressMaxConnections: 30,
    egressIdleTimeoutMs: 7000,
    egressCache: true
  })
})

t.test('TRUST_PROXY accepts false, a hop count or IPs/CIDRs; blank values mean the default', async (t) => {
  t.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false)
  t.equal(loadConfig({ TRUST_PROXY: '2' }).trustProxy, 2)
  t.same(loadConfig({ TRUST_PROXY: '::1' }).trustProxy, ['::1'])
  t.equal(loadConfig({ PORT: '  ' }).port, 8080)
  t.equal(loadConfig({ DATABASE_URL: 'sqlite::memory:' }).databaseUrl, 'sqlite::memory:')
  t.equal(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins?.[0], '*')
})

t.test('invalid values throw a ConfigError naming the variable', async (t) => {
  const cases: Array<[Record<string, string>, string, RegExp]> = [
    [{ PORT: 'abc' }, 'PORT', /must be a whole number, got "abc"/],
    [{ PORT: '70000' }, 'PORT', /between 0 and 65535/],
    [{ PORT: '-1' }, 'PORT', /whole number/],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL', /"mysql:\/\/x"/],
    [{ DATABASE_URL: 'sqlite:' }, 'DATABASE_URL', /sqlite:PATH/],
    [{ ADMIN_TOKEN: 'short' }, 'ADMIN_TOKEN', /at least 16 characters/],
    [{ ADMIN_AUTH_MAX_FAILURES: '0' }, 'ADMIN_AUTH_MAX_FAILURES', /between 1 and 1000000, got 0/],
    [{ ADMIN_AUTH_MAX_FAILURES: 'ten' }, 'ADMIN_AUTH_MAX_FAILURES', /whole number, got "ten"/],
    [{ ADMIN_CORS_ORIGINS: '*' }, 'ADMIN_CORS_ORIGINS', /"\*" is not an exact origin/],
    [{ ADMIN_CORS_ORIGINS: 'https://*.example.com' }, 'ADMIN_CORS_ORIGINS', /"https:\/\/\*\.example\.com" is not an exact origin/],
    [{ ADMIN_CORS_ORIGINS: 'https://dash.example.com/' }, 'ADMIN_CORS_ORIGINS', /no path/],
    [{ ADMIN_CORS_ORIGINS: 'dash.example.com' }, 'ADMIN_CORS_ORIGINS', /"dash\.example\.com"/],
    [{ REDIS_URL: 'localhost:6379' }, 'REDIS_URL', /redis:\/\//],
    [{ REDIS_TIMEOUT_MS: '0' }, 'REDIS_TIMEOUT_MS', /between 1 and 60000, got 0/],
    [{ REDIS_TIMEOUT_MS: '100ms' }, 'REDIS_TIMEOUT_MS', /whole number, got "100ms"/],
    [{ TRUST_PROXY: '300.1.1.1/99' }, 'TRUST_PROXY', /"300\.1\.1\.1\/99"/],
    [{ TRUST_PROXY: '10.0.0.0/33' }, 'TRUST_PROXY', /"10\.0\.0\.0\/33"/],
    [{ TRUST_PROXY: 'true' }, 'TRUST_PROXY', /"true"/],
    [{ WORKERS: '0' }, 'WORKERS', /between 1 and 256/],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL', /one of fatal, error, warn, info, debug, trace, silent/],
    [{ BODY_LIMIT: '10MB' }, 'BODY_LIMIT', /whole number/],
    [{ UPSTREAM_TIMEOUT_MS: '0' }, 'UPSTREAM_TIMEOUT_MS', /between 1/],
    [{ RATE_LIMIT_MAX: '0' }, 'RATE_LIMIT_MAX', /between 1/],
    [{ RATE_LIMIT_WINDOW_MS: '1.5' }, 'RATE_LIMIT_WINDOW_MS', /whole number/],
    [{ CORS_ORIGINS: 'app.example.com' }, 'CORS_ORIGINS', /"app\.example\.com"/],
    [{ AUDIT_RETENTION_DAYS: '0' }, 'AUDIT_RETENTION_DAYS', /between 1/],
    [{ HEADERS_TIMEOUT_MS: 'x' }, 'HEADERS_TIMEOUT_MS', /whole number/],
    [{ REQUEST_TIMEOUT_MS: '0' }, 'REQUEST_TIMEOUT_MS', /between 1/],
    [{ HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '1000' }, 'HEADERS_TIMEOUT_MS', /must not exceed REQUEST_TIMEOUT_MS \(1000\), got 5000/],
    [{ KEEP_ALIVE_TIMEOUT_MS: '0' }, 'KEEP_ALIVE_TIMEOUT_MS', /between 1/],
    [{ MAX_CONNECTIONS: '0' }, 'MAX_CONNECTIONS', /must be between 1 and 1000000, got 0/],
    [{ MAX_CONNECTIONS: '1e4' }, 'MAX_CONNECTIONS', /must be a whole number, got "1e4"/],
    [{ MAX_CONNECTIONS: '2000000' }, 'MAX_CONNECTIONS', /must be between 1 and 1000000, got 2000000/],
    [{ SEND_TIMEOUT_MS: '0' }, 'SEND_TIMEOUT_MS', /between 1 and 2147483647, got 0/],
    [{ SEND_TIMEOUT_MS: '2147483648' }, 'SEND_TIMEOUT_MS', /between 1 and 2147483647/],
    [{ SEND_TIMEOUT_MS: '1m' }, 'SEND_TIMEOUT_MS', /whole number/],
    [{ SHUTDOWN_DELAY_MS: 'soon' }, 'SHUTDOWN_DELAY_MS', /whole number/],
    [{ SHUTDOWN_GRACE_MS: '-5' }, 'SHUTDOWN_GRACE_MS', /whole number/],
    [{ SERVER_TIMING: 'off' }, 'SERVER_TIMING', /must be true or false/]
  ]
  for (const [env, variable, problem] of cases) {
    let caught: unknown
    try {
      loadConfig(env)
    } catch (err) {
      caught = err
    }
    t.ok(caught instanceof ConfigError, `${JSON.stringify(env)} is refused`)
    t.equal((caught as ConfigError).variable, variable)
    t.match((caught as ConfigError).message, new RegExp(`^${variable}: `))
    t.match((caught as ConfigError).message, problem)
  }
})

t.test('.env values fill only what the environment leaves unset', async (t) => {
  const file = [
    '# a comment',
    'PORT=9090',
    'LOG_LEVEL="debug"',
    "ADMIN_TOKEN='from-dotenv-0123456789'",
    'export REDIS_URL=redis://127.0.0.1:6379',
    ''
  ].join('\n')
  t.same(envFileAdditions(file, { PORT: '8081', LOG_LEVEL: '' }), {
    ADMIN_TOKEN: 'from-dotenv-0123456789',
    REDIS_URL: 'redis://127.0.0.1:6379'
  })
  t.same(envFileAdditions('', {}), {})
})

t.test('.env.example and the README list every variable, and .env.example shows the defaults', async (t) => {
  const { readFileSync } = await import('node:fs')
  const example = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const variables = ['PORT', 'HOST', 'DATABASE_URL', 'ADMIN_TOKEN', 'ADMIN_AUTH_MAX_FAILURES', 'ADMIN_CORS_ORIGINS', 'REDIS_URL', 'REDIS_TIMEOUT_MS', 'TRUST_PROXY', 'WORKERS', 'LOG_LEVEL',
    'BODY_LIMIT', 'UPSTREAM_TIMEOUT_MS', 'RATE_LIMIT_MAX', 'RATE_LIMIT_WINDOW_MS', 'CORS_ORIGINS', 'AUDIT_RETENTION_DAYS',
    'HEADERS_TIMEOUT_MS', 'REQUEST_TIMEOUT_MS', 'KEEP_ALIVE_TIMEOUT_MS', 'MAX_CONNECTIONS', 'SEND_TIMEOUT_MS', 'SHUTDOWN_DELAY_MS', 'SHUTDOWN_GRACE_MS', 'SERVER_TIMING',
    'CACHE_MEMORY_BYTES', 'ACCESS_LOG_FILE', 'ACCESS_LOG_ROTATE_BYTES', 'ACCESS_LOG_KEEP', 'LOG_SINKS', 'LOG_SINK_QUEUE',
    'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_TRACES_SAMPLER_ARG', 'OTEL_SERVICE_NAME', 'CONFIG_FILE', 'CONFIG_REVISIONS_KEEP',
    'TLS_PORT', 'TLS_CERT_FILE', 'TLS_KEY_FILE', 'SECRET_KEY',
    'EGRESS_PORT', 'EGRESS_AUTH', 'EGRESS_DEFAULT', 'EGRESS_MAX_CONNECTIONS', 'EGRESS_IDLE_TIMEOUT_MS', 'EGRESS_CACHE']
  for (const name of variables) {
    t.match(example, new RegExp(`^#? ?${name}=`, 'm'), `.env.example has ${name}`)
    t.match(readme, new RegExp('`' + name + '`'), `README has ${name}`)
  }
  t.same(loadConfig(envFileAdditions(example, {})), loadConfig({}), 'the values in .env.example are the defaults')
})

t.test('SECRET_KEY, CONFIG_REVISIONS_KEEP and CONFIG_FILE are checked', async (t) => {
  t.throws(() => loadConfig({ SECRET_KEY: 'short' }), new ConfigError('SECRET_KEY', 'must be at least 16 characters'))
  t.throws(() => loadConfig({ CONFIG_REVISIONS_KEEP: '0' }), new ConfigError('CONFIG_REVISIONS_KEEP', 'must be between 1 and 1000000, got 0'))
  t.throws(() => loadConfig({ CONFIG_FILE: './gatehouse.toml' }), new ConfigError('CONFIG_FILE', 'must name a .yaml, .yml or .json file, got "./gatehouse.toml"'))
  t.equal(loadConfig({ CONFIG_FILE: 'conf/gh.YML' }).configFile, 'conf/gh.YML')
})

t.test('EGRESS_* settings: defaults, values, and refusals naming the variable', async (t) => {
  t.match(loadConfig({}), { egressPort: null, egressAuth: 'basic', egressDefault: 'allow', egressMaxConnections: 10_000, egressIdleTimeoutMs: 300_000, egressCache: false })
  t.equal(loadConfig({ EGRESS_CACHE: 'true' }).egressCache, true)
  t.match(loadConfig({ EGRESS_PORT: '3128', EGRESS_AUTH: 'none', EGRESS_DEFAULT: 'deny', EGRESS_MAX_CONNECTIONS: '50', EGRESS_IDLE_TIMEOUT_MS: '1000', EGRESS_CACHE: 'false' }),
    { egressPort: 3128, egressAuth: 'none', egressDefault: 'deny', egressMaxConnections: 50, egressIdleTimeoutMs: 1000, egressCache: false })
  t.throws(() => loadConfig({ EGRESS_PORT: 'proxy' }), /EGRESS_PORT: must be a whole number/)
  t.throws(() => loadConfig({ EGRESS_AUTH: 'digest' }), /EGRESS_AUTH: must be basic or none/)
  t.throws(() => loadConfig({ EGRESS_DEFAULT: 'maybe' }), /EGRESS_DEFAULT: must be allow or deny/)
  t.throws(() => loadConfig({ EGRESS_MAX_CONNECTIONS: '0' }), /EGRESS_MAX_CONNECTIONS: must be between/)
  t.throws(() => loadConfig({ EGRESS_CACHE: 'yes' }), /EGRESS_CACHE: must be true or false, got "yes"/)
  t.throws(() => loadConfig({ EGRESS_CACHE: 'TRUE' }), /EGRESS_CACHE: must be true or false/)
})
