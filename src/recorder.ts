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
    if (chunks === undefined) return
    // A memory of its own, exactly the body's size: a slice of Node's shared 8 KiB pool would keep
    // the whole slab alive, other garbage included, for as long as the entry lives.
    const body = Buffer.allocUnsafeSlow(this.#size)
    let offset = 0
    for (const chunk of chunks) offset += chunk.copy(body, offset)
    this.#commit(body)
  }

  /** The body failed or was aborted: nothing is stored. */
  abort (): void {
    if (this.#chunks === undefined) return
    this.#chunks = undefined
    this.#abandon?.()
  }
}
