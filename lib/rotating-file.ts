import { closeSync, fstatSync, openSync, renameSync, writeSync } from 'node:fs'

export interface RotatingFileOptions {
  path: string
  /** Rotate before a line would take the file past this many bytes; 0: never (external logrotate). */
  rotateBytes: number
  /** Rotated files kept: PATH.1 (newest) … PATH.keep. */
  keep: number
  /**
   * A rotation ended: the file that was PATH is now `rotatedPath`. `fd` is open on it for
   * reading (later renames do not disturb it); whoever is told owns it and must close it.
   */
  onRotated?: (rotatedPath: string, fd: number) => void
  /** A write or rotation failed (disk full, directory gone): the lines of that turn are lost. */
  onError?: (err: Error) => void
}

/**
 * An append-only log file that rotates by size (PATH → PATH.1 → … → PATH.keep, the oldest
 * deleted) and can be reopened (SIGHUP after an external logrotate moved it away). Lines are
 * collected during one event-loop turn and written with one synchronous write after it, the
 * way pino writes to stdout: the request path only appends to an array, and a rotation never
 * races a write.
 */
export class RotatingFile {
  private fd: number
  private size: number
  private pending: string[] = []
  private scheduled = false
  private closed = false
  /** Lines lost to write failures since start. */
  lost = 0

  constructor (private readonly options: RotatingFileOptions) {
    this.fd = openSync(options.path, 'a')
    this.size = fstatSync(this.fd).size
  }

  /** `line` ends with its newline. */
  write (line: string): void {
    if (this.closed) return
    this.pending.push(line)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.flush)
    }
  }

  /** Writes what is pending now (also what close and reopen do first). */
  readonly flush = (): void => {
    this.scheduled = false
    const lines = this.pending
    if (lines.length === 0) return
    this.pending = []
    try {
      const { rotateBytes } = this.options
      let chunk = ''
      let chunkBytes = 0
      for (const line of lines) {
        const bytes = Buffer.byteLength(line)
        if (rotateBytes > 0 && this.size + chunkBytes + bytes > rotateBytes && this.size + chunkBytes > 0) {
          this.append(chunk)
          chunk = ''
          chunkBytes = 0
          this.rotate()
        }
        chunk += line
        chunkBytes += bytes
      }
      this.append(chunk)
    } catch (err) {
      this.lost += lines.length
      this.options.onError?.(err as Error)
    }
  }

  /** Closes and opens PATH again: after logrotate moved it, writing goes on in a new file. */
  reopen (): void {
    if (this.closed) return
    this.flush()
    try {
      closeSync(this.fd)
    } catch {}
    this.fd = openSync(this.options.path, 'a')
    this.size = fstatSync(this.fd).size
  }

  /** Rotates now, whatever the size (an empty file is left alone): used at shutdown before the last upload. */
  rotateNow (): void {
    this.flush()
    if (this.size > 0) this.rotate()
  }

  close (): void {
    if (this.closed) return
    this.flush()
    this.closed = true
    closeSync(this.fd)
  }

  private append (chunk: string): void {
    if (chunk === '') return
    this.size += writeSync(this.fd, chunk)
  }

  private rotate (): void {
    const { path, keep } = this.options
    closeSync(this.fd)
    for (let i = keep - 1; i >= 1; i--) {
      try {
        renameSync(`${path}.${i}`, `${path}.${i + 1}`)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
    }
    renameSync(path, `${path}.1`)
    const rotated = this.options.onRotated === undefined ? -1 : openSync(`${path}.1`, 'r')
    this.fd = openSync(path, 'a')
    this.size = 0
    if (rotated !== -1) this.options.onRotated?.(`${path}.1`, rotated)
  }
}
