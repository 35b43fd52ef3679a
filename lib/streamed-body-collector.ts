import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Streamed body bytes between two young-generation collections (measured: see below). */
const DEFAULT_EVERY_BYTES = 4 * 1024 * 1024
/** A body's first bytes are not counted: ordinary API bodies never cause a collection. */
const UNCOUNTED_BYTES_PER_BODY = 64 * 1024

/**
 * Keeps a streamed body's garbage from piling up. Every chunk of a proxied body arrives as a
 * fresh buffer whose memory lies outside the JS heap: Node's HTTP parser copies each request
 * body chunk, and each read from an upstream socket is a new buffer. Dead ones are freed by
 * V8's young-generation collection, which V8 starts when its young generation fills with JS
 * objects or once ~32 MiB of such buffers have piled up. A body streaming at hundreds of MiB/s
 * allocates few JS objects per MiB, so the second limit is the one reached: a 1 GiB upload
 * grew the process by 36–49 MiB. A young-generation collection every 4 MiB of streamed body
 * keeps that to 1–5 MiB, and the upload even moved faster (bench/upload-memory.mjs:
 * ~300–475 → 650–830 MiB/s). Only what a body carries beyond its first 64 KiB counts: with many
 * ordinary answers in flight a collection has more live objects to copy (~2 ms each with
 * 64 answers of 16 KiB in flight), and there V8's own schedule keeps up anyway.
 */
export class StreamedBodyCollector {
  private pending = 0

  constructor (
    private readonly everyBytes: number = DEFAULT_EVERY_BYTES,
    private readonly collect: () => void = youngGenerationCollection()
  ) {}

  /** A chunk of `bytes` went through; its body has carried `bodyBytes` so far, this chunk included. */
  add (bodyBytes: number, bytes: number): void {
    if (bodyBytes <= UNCOUNTED_BYTES_PER_BODY) return
    this.pending += bytes
    if (this.pending < this.everyBytes) return
    this.pending = 0
    this.collect()
  }
}

/** V8's gc() in a fresh context, exposed at run time: the process needs no --expose-gc flag. */
function youngGenerationCollection (): () => void {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as (options: { type: 'minor' }) => void
  return () => { gc({ type: 'minor' }) }
}
