import t from 'tap'
import { SecretBox } from '../../lib/secret-box.js'

t.test('seal and open round-trip; the sealed text is v1.<iv>.<tag>.<ciphertext> and differs every time', async (t) => {
  const box = new SecretBox('a-secret-key-of-enough-length')
  const a = box.seal('hash:0123')
  const b = box.seal('hash:0123')
  t.match(a, /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]+$/)
  t.not(a, b, 'a fresh IV per value')
  t.equal(box.open(a), 'hash:0123')
  t.equal(box.open(box.seal('')), '')
  t.equal(box.open(box.seal('ünïcødé ✓')), 'ünïcødé ✓')
})

t.test('another key, an altered value or another format does not open', async (t) => {
  const sealed = new SecretBox('a-secret-key-of-enough-length').seal('secret')
  t.throws(() => new SecretBox('another-key-of-enough-length').open(sealed), /does not open with this SECRET_KEY/)
  const [v, iv, tag, data] = sealed.split('.')
  const flipped = data.startsWith('A') ? `B${data.slice(1)}` : `A${data.slice(1)}`
  t.throws(() => new SecretBox('a-secret-key-of-enough-length').open([v, iv, tag, flipped].join('.')), /does not open/)
  t.throws(() => new SecretBox('a-secret-key-of-enough-length').open('gz.abc'), /not a sealed value/)
})
