import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions, Level, Logger } from 'pino'

/**
 * Fastify's childLoggerFactory: each request's logger creates pino's child — which
 * serialises the request id into its line prefix, ~2 µs per request in profiles — only
 * when a line is written at an enabled level. Most proxied requests write none below info.
 */
export function lazyChildLogger (parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  // A route's own logLevel: the child is needed to know what is enabled.
  if (options.level !== undefined) return parent.child(bindings, options)
  return new LazyChildLogger(parent as Logger, bindings) as unknown as FastifyBaseLogger
}

class LazyChildLogger {
  private created: FastifyBaseLogger | null = null

  constructor (private readonly parent: Logger, private readonly bindings: Bindings) {}

  get level (): string { return this.created?.level ?? this.parent.level }
  set level (level: string) { this.real().level = level }

  fatal (...args: unknown[]): void { this.write('fatal', args) }
  error (...args: unknown[]): void { this.write('error', args) }
  warn (...args: unknown[]): void { this.write('warn', args) }
  info (...args: unknown[]): void { this.write('info', args) }
  debug (...args: unknown[]): void { this.write('debug', args) }
  trace (...args: unknown[]): void { this.write('trace', args) }
  silent (): void {}

  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger { return this.real().child(bindings, options) }

  private write (level: Level, args: unknown[]): void {
    if (this.created === null && !this.parent.isLevelEnabled(level)) return
    (this.real()[level] as (...line: unknown[]) => void)(...args)
  }

  private real (): FastifyBaseLogger {
    this.created ??= this.parent.child(this.bindings)
    return this.created
  }
}
