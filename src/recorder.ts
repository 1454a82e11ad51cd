/**
 * Records a response body while it streams to the caller, up to a byte bound. Past the bound the
 * recording is dropped at once and the body keeps streaming, uncached: the cache never holds more
 * than `maxEntrySize` bytes for a response it will not store.
 */
export class Recorder {
  readonly #limit: number
  readonly #commit: (body: Buffer) => void
  #chunks: Buffer[] | undefined = []
  #size = 0

  constructor (limit: number, commit: (body: Buffer) => void) {
    this.#limit = limit
    this.#commit = commit
  }

  write (chunk: Buffer): void {
    if (this.#chunks === undefined) return
    this.#size += chunk.byteLength
    if (this.#size > this.#limit) {
      this.#chunks = undefined
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
    this.#chunks = undefined
  }
}
