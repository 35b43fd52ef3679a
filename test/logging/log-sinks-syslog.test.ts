import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { createRoute, freePort, httpRequest, startGateway, startUpstream, tempDir, type TestContext } from '../helper.js'

const RSYSLOGD = '/usr/sbin/rsyslogd'
const required = process.env.GATEHOUSE_REQUIRE_SERVICES === '1'

/** A private rsyslogd (own config, ports, pid file and output in a temp dir) writing each message's RFC 5424 fields. */
async function startRsyslog (t: TestContext) {
  const dir = tempDir(t)
  const udpPort = await freePort()
  const tcpPort = await freePort()
  const out = path.join(dir, 'received.log')
  writeFileSync(path.join(dir, 'rsyslog.conf'), `
global(workDirectory="${dir}")
module(load="imudp")
module(load="imtcp")
template(name="fields" type="string" string="%inputname%|%protocol-version%|%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
ruleset(name="gatehouse") { action(type="omfile" file="${out}" template="fields") }
input(type="imudp" port="${udpPort}" address="127.0.0.1" ruleset="gatehouse")
input(type="imtcp" port="${tcpPort}" address="127.0.0.1" ruleset="gatehouse")
`)
  const child = spawn(RSYSLOGD, ['-n', '-f', path.join(dir, 'rsyslog.conf'), '-i', path.join(dir, 'rsyslogd.pid')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  t.teardown(() => { child.kill('SIGKILL') })
  // Ready once it accepts TCP connections.
  const { connect } = await import('node:net')
  const deadline = Date.now() + 10_000
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(tcpPort, '127.0.0.1').once('connect', () => { socket.destroy(); resolve(true) }).once('error', () => resolve(false))
    })
    if (up) break
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`rsyslogd did not start: ${output}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const received = (): string[][] => existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean).map((line) => line.split('|')) : []
  return { udpPort, tcpPort, received }
}

t.test('RFC 5424 over UDP and over TCP with octet-counted framing, received by rsyslogd', { skip: !existsSync(RSYSLOGD) && !required ? 'rsyslogd is not installed' : false }, async (t) => {
  const rsyslog = await startRsyslog(t)
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, {
    env: { LOG_SINKS: `syslog+udp://127.0.0.1:${rsyslog.udpPort},syslog+tcp://127.0.0.1:${rsyslog.tcpPort}` },
    build: { logShipping: { maxWaitMs: 50, firstRetryMs: 50, maxRetryDelayMs: 200 } }
  })
  await createRoute(app, { name: 'sys', path: '/sys', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 12; i++) t.equal((await httpRequest(`${url}/sys/${i}`, { headers: { 'x-request-id': `sys-${i}` } })).statusCode, 200)

  const deadline = Date.now() + 10_000
  const ours = (input: string): string[][] => rsyslog.received().filter((fields) => fields[0] === input && fields[9].includes('"sys-'))
  while ((ours('imudp').length < 12 || ours('imtcp').length < 12) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))

  for (const input of ['imudp', 'imtcp']) {
    const messages = ours(input)
    t.equal(messages.length, 12, `${input}: every line, each one message (no frame split or merged)`)
    const [, version, pri, timestamp, host, app, procId, msgId, sd, msg] = messages[0]
    t.equal(version, '1', 'RFC 5424 version')
    t.equal(pri, '134', 'local0.info')
    t.match(timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}/)
    t.equal(host, hostname())
    t.equal(app, 'gatehouse')
    t.equal(procId, String(process.pid))
    t.equal(msgId, 'request')
    t.equal(sd, '-')
    t.match(JSON.parse(msg), { reqId: /^sys-\d+$/, route: 'sys', status: 200, traceId: /^[0-9a-f]{32}$/ })
    t.same(messages.map((fields) => JSON.parse(fields[9]).reqId), Array.from({ length: 12 }, (_v, i) => `sys-${i}`), `${input}: in order`)
  }
  const admin = rsyslog.received().find((fields) => fields[7] === 'admin')
  t.ok(admin, 'the admin audit row arrives with MSGID admin')
})
