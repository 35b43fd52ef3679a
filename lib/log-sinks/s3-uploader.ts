import { closeSync, createReadStream, fstatSync } from 'node:fs'
import { basename } from 'node:path'
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { BatchQueue, type BatchQueueOptions } from './batch-queue.js'

export interface RotatedFile {
  /** The file's name when it was rotated. */
  path: string
  /** Open for reading; closed once uploaded or dropped. */
  fd: number
  /** When its rotation ended (epoch ms): part of the object key. */
  rotatedAt: number
}

export interface S3Target {
  bucket: string
  prefix: string
  endpoint: string | null
  region: string | null
  /** Names this process in the key: several instances share one prefix. */
  instance: string
}

/** Rotated files waiting for their upload, held at most (each holds an open descriptor). */
const MAX_PENDING_FILES = 32

/**
 * Uploads each rotated access-log file to s3://bucket/prefix/INSTANCE/NAME.TIMESTAMP with the
 * AWS SDK v3 client (credentials from the usual AWS_* variables), one file at a time, retried
 * with backoff like every sink's batch; a file still failing after the retry window is dropped
 * and counted. The key's timestamp is when its rotation ended (UTC, ISO basic format).
 */
export class S3Uploader {
  readonly queue: BatchQueue<RotatedFile>
  private readonly client: S3Client

  constructor (private readonly target: S3Target, timing: Pick<BatchQueueOptions<RotatedFile>, 'retryWindowMs' | 'firstRetryMs' | 'maxRetryDelayMs'>) {
    this.client = new S3Client({
      // The SDK would retry on its own too; the queue's backoff is the one retry policy.
      maxAttempts: 1,
      // No aws-chunked bodies with trailing checksums: S3-compatible stores (MinIO, s3rver) differ there.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      ...(target.region === null ? {} : { region: target.region }),
      ...(target.endpoint === null ? {} : { endpoint: target.endpoint, forcePathStyle: true })
    })
    this.queue = new BatchQueue<RotatedFile>({
      maxQueued: MAX_PENDING_FILES,
      maxBatch: 1,
      maxWaitMs: 0,
      ...timing,
      send: async ([file], signal) => {
        await this.upload(file, signal)
        closeSync(file.fd)
        return { retry: [], refused: 0, error: null }
      }
    })
  }

  keyOf (file: RotatedFile): string {
    const stamp = new Date(file.rotatedAt).toISOString().replace(/[-:]/g, '')
    const name = `${this.target.instance}/${basename(file.path).replace(/\.\d+$/, '')}.${stamp}`
    return this.target.prefix === '' ? name : `${this.target.prefix}/${name}`
  }

  /** Queues a rotated file; one over the bound is closed at once (and counted as dropped). */
  add (file: RotatedFile): void {
    const before = this.queue.dropped
    this.queue.push(file)
    if (this.queue.dropped !== before) closeSync(file.fd)
  }

  private async upload (file: RotatedFile, signal: AbortSignal): Promise<void> {
    const length = fstatSync(file.fd).size
    await this.client.send(new PutObjectCommand({
      Bucket: this.target.bucket,
      Key: this.keyOf(file),
      Body: createReadStream('', { fd: file.fd, start: 0, autoClose: false }),
      ContentLength: length,
      ContentType: 'application/x-ndjson'
    }), { abortSignal: signal })
  }

  close (): void { this.client.destroy() }
}
