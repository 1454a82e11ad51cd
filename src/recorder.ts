/**
 * Records a response body while it streams to the caller, up to a byte bound. Past the bound the
 * recording is dropped at once and the body keeps streaming, uncached: the cache never holds more
 * than `maxEntrySize` bytes for a response it will not store.
 */
export class Recorder {
  readonly #limit: number
  readonly #commit: (body: Buffer) => void
  readonly #abandon: (() => void) | undefined
  #chunks: Buffer[] | undefined = []
  #size = 0

  /** `abandon` runs once when nothing will be committed: the body outgrew the bound, or failed. */
  constructor (limit: number, commit: (body: Buffer) => void, abandon?: () => void) {
    this.#limit = limit
    this.#commit = commit
    this.#abandon = abandon
  }

  write (chunk: Buffer): void {
    if (this.#chunks === undefined) return
    this.#size += chunk.byteLength
    if (this.#size > this.#limit) {
      this.#chunks = undefined
      this.#abandon?.()
      return
    }
    // A copy: the caller owns the chunk it is handed, and may change it.
    this.#chunks.push(Buffer.from(chunk))
  }

  /** The body is complete: store it, unless it outgrew the bound. */
  end (): void {
    const chunks = this.#chunks
    this.#chunks = undefined
    if (chunks !== undefined) this.#commit(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#size))
  }

  /** The body failed or was aborted: nothing is stored. */
  abort (): void {
    if (this.#chunks === undefined) return
    this.#chunks = undefined
    this.#abandon?.()
  }
}
