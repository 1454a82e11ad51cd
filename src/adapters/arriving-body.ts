/**
 * The body of a Response that `cachedFetch` builds while its exchange is still under way (a
 * follower's, src/adapters/follower.ts), held as it arrives until the caller reads it: whole, for
 * arrayBuffer(), text() and the like, or as a web stream once the caller asks for `body`
 * (src/adapters/fetched-response.ts). Under the profiler, making a web stream transferable (Node 20
 * does it for every one) took a tenth of the CPU time of a 1 KB 304 through `cachedFetch()`, and
 * building the stream and reading it back chunk by chunk as much again. Nobody reading, it holds
 * at most HIGH_WATER_MARK before it pauses the exchange, as the stream did.
 */
import type { Dispatcher } from 'undici'

type Controller = Dispatcher.DispatchController

/** What is held before the exchange is paused while nobody reads (fetch pauses likewise). */
const HIGH_WATER_MARK = 64 * 1024

export class ArrivingBody {
  readonly #controller: Controller
  /** Called once the body has all been read or has failed: nothing more can happen to it. */
  readonly #settled: () => void
  #chunks: Buffer[] = []
  #length = 0
  #ended = false
  #failure: { readonly reason: unknown } | undefined
  /** Read whole, or closed: nothing can fail it any more. */
  #done = false
  /** A whole read waiting for the end. */
  #reader: { readonly resolve: (chunks: readonly Buffer[]) => void, readonly reject: (reason: unknown) => void } | undefined
  #stream: ReadableByteStreamController | undefined

  constructor (controller: Controller, settled: () => void) {
    this.#controller = controller
    this.#settled = settled
  }

  /**
   * A chunk as it came, lent (shared, and never to change) or not: a whole read copies it (or
   * decodes it), and a stream hands out a copy of every chunk (enqueue()).
   */
  push (chunk: Buffer): void {
    if (this.#failure !== undefined) return
    const stream = this.#stream
    if (stream !== undefined) {
      enqueue(stream, chunk)
      if ((stream.desiredSize ?? 0) <= 0) this.#controller.pause()
      return
    }
    this.#chunks.push(chunk)
    this.#length += chunk.byteLength
    if (this.#reader === undefined && this.#length >= HIGH_WATER_MARK) this.#controller.pause()
  }

  end (): void {
    this.#ended = true
    const reader = this.#reader
    if (this.#stream !== undefined) this.#drained()
    else if (reader !== undefined) reader.resolve(this.#whole())
  }

  /** The exchange failed or the caller aborted: a read not finished yet fails with `reason`. */
  fail (reason: unknown): void {
    if (this.#done || this.#failure !== undefined) return
    this.#failure = { reason }
    this.#chunks = []
    this.#stream?.error(reason)
    this.#reader?.reject(reason)
    this.#reader = undefined
    this.#settled()
  }

  /** The whole body, once it has all come: for one read only. */
  async read (): Promise<readonly Buffer[]> {
    if (this.#failure !== undefined) throw this.#failure.reason
    if (this.#ended) return this.#whole()
    const whole = new Promise<readonly Buffer[]>((resolve, reject) => { this.#reader = { resolve, reject } })
    this.#controller.resume()
    return await whole
  }

  /**
   * The body as a web stream, from what has come so far on; instead of read(). A byte stream, as
   * fetch's body is: a caller may read it into buffers of its own (a BYOB reader).
   */
  stream (): ReadableStream<Uint8Array> {
    return new ReadableStream({
      type: 'bytes',
      start: (stream) => {
        this.#stream = stream
        if (this.#failure !== undefined) {
          stream.error(this.#failure.reason)
          return
        }
        for (const chunk of this.#chunks) enqueue(stream, chunk)
        this.#chunks = []
      },
      pull: () => {
        if (this.#ended) this.#drained()
        else this.#controller.resume()
      },
      cancel: (reason) => {
        this.#settled()
        this.#controller.abort(reason instanceof Error ? reason : new Error('the body was cancelled', { cause: reason }))
      }
    }, { highWaterMark: HIGH_WATER_MARK })
  }

  /** Everything that came, for the one read: the body is done with. */
  #whole (): readonly Buffer[] {
    const chunks = this.#chunks
    this.#chunks = []
    this.#reader = undefined
    this.#done = true
    this.#settled()
    return chunks
  }

  /** Once the whole body has come and been read from the stream, it closes. */
  #drained (): void {
    const stream = this.#stream!
    if (stream.desiredSize !== HIGH_WATER_MARK) return
    this.#done = true
    this.#settled()
    stream.close()
  }
}

/**
 * A copy of `chunk` into the stream, as a plain Uint8Array with a buffer of its own, as fetch
 * enqueues: a byte stream takes the buffer of what it is given (it detaches it), and a chunk's
 * buffer may hold other bytes (a socket read's, Node's pool), or be lent. An empty one is left out:
 * a byte stream refuses it.
 */
function enqueue (stream: ReadableByteStreamController, chunk: Buffer): void {
  if (chunk.byteLength > 0) stream.enqueue(new Uint8Array(chunk))
}
