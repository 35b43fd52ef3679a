import t from 'tap'
import { StreamedBodyCollector } from '../../lib/streamed-body-collector.js'

const KIB = 1024
const MIB = 1024 * KIB

/** A collector that counts its collections instead of running them, every `every` bytes. */
function counting (every: number): { collector: StreamedBodyCollector, collections: () => number } {
  let collections = 0
  return { collector: new StreamedBodyCollector(every, () => { collections++ }), collections: () => collections }
}

/** Feeds one body of `total` bytes in `chunk`-sized pieces, as forwarding does. */
function stream (collector: StreamedBodyCollector, total: number, chunk: number): void {
  for (let sent = 0; sent < total;) {
    const bytes = Math.min(chunk, total - sent)
    sent += bytes
    collector.add(sent, bytes)
  }
}

t.test('ordinary bodies (up to 64 KiB each) never cause a collection, however many', async (t) => {
  const { collector, collections } = counting(4 * MIB)
  for (let i = 0; i < 10_000; i++) stream(collector, 16 * KIB, 16 * KIB)
  for (let i = 0; i < 1_000; i++) stream(collector, 64 * KIB, 8 * KIB)
  t.equal(collections(), 0)
})

t.test('a large body causes one collection per threshold of what it carries past its first 64 KiB', async (t) => {
  const { collector, collections } = counting(4 * MIB)
  stream(collector, 64 * KIB + 16 * MIB, 64 * KIB)
  t.equal(collections(), 4)
  // Counting goes on across bodies: the next large body continues where this one stopped.
  stream(collector, 64 * KIB + 2 * MIB, 64 * KIB)
  stream(collector, 64 * KIB + 2 * MIB, 64 * KIB)
  t.equal(collections(), 5)
})

t.test('the default collection really runs (V8\'s young-generation gc) without throwing', async (t) => {
  const collector = new StreamedBodyCollector()
  t.doesNotThrow(() => stream(collector, 64 * KIB + 8 * MIB, 64 * KIB))
})
