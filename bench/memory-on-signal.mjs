// Preloaded into a measured process by bench/idle-connections.mjs (with --expose-gc): on SIGUSR2,
// collect garbage fully and print process.memoryUsage() as one JSON line on stderr, so the bench
// reads live memory, not whatever garbage the last young-generation collection left.
process.on('SIGUSR2', () => {
  globalThis.gc?.()
  globalThis.gc?.()
  process.stderr.write(`memory ${JSON.stringify(process.memoryUsage())}\n`)
})
