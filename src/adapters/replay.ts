/**
 * Plays a response held in memory (a hit, or a stored entry freshened by a 304) into an undici
 * handler, as a dispatcher would: onRequestStart, onResponseStart, onResponseData in slices,
 * onResponseEnd, honouring the handler's pause(), resume() and abort().
 */
import type { Dispatcher } from 'undici'
import { abortReason } from './request-aborted.js'
import { bodyLength, bodySlice, type StoredBody } from '../entry.js'
import { endAnswer } from './answer-end.js'
import { canBorrow } from './subscriber.js'
import { turnDue } from './turns.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController

/** A slice a time, so that a paused consumer stops the flow between slices. */
const SLICE = 64 * 1024

export interface Replayed {
  readonly status: number
  readonly statusText: string
  readonly headers: Record<string, string | string[]>
  /** `undefined` for a response without content (HEAD, 204, 304). */
  readonly body: StoredBody | undefined
  /** The trailer fields of an answer held back and played whole (src/adapters/cache-handler.ts); none for a stored one. */
  readonly trailers?: Record<string, string | string[] | undefined>
}

export class ReplayController implements Controller {
  readonly #handler: Handler
  readonly #response: Replayed
  #offset = 0
  #paused = false
  #aborted = false
  #done = false
  #reason: Error | null = null

  constructor (handler: Handler, response: Replayed) {
    this.#handler = handler
    this.#response = response
  }

  get aborted (): boolean { return this.#aborted }
  get paused (): boolean { return this.#paused }
  get reason (): Error | null { return this.#reason }

  /**
   * Starts outside dispatch(), as a dispatcher's callbacks always do: on a microtask. `fromMemory`:
   * an answer given inside dispatch(), which waits for the event loop's next turn once such
   * answers have held it long enough (src/adapters/turns.ts).
   */
  start (requestStarted: boolean, fromMemory = false): void {
    const play = (): void => {
      try {
        if (!requestStarted) this.#handler.onRequestStart?.(this, {})
        if (this.#aborted) return
        const { status, statusText, headers } = this.#response
        this.#handler.onResponseStart?.(this, status, headers, statusText)
        this.#flow()
      } catch (error) {
        this.#fail(error as Error)
      }
    }
    const turn = fromMemory ? turnDue() : undefined
    if (turn === undefined) queueMicrotask(play)
    else void turn.then(play)
  }

  #flow (): void {
    const body = this.#response.body
    const length = body === undefined ? 0 : bodyLength(body)
    const handler = this.#handler
    while (!this.#paused && !this.#aborted && this.#offset < length) {
      const start = this.#offset
      const end = Math.min(start + SLICE, length)
      this.#offset = end
      // A handler that can borrow (a flight, which hands a chunk on as a copy or to a caller that
      // borrows too; cachedFetch's, which copies what it hands out) is lent views of the stored
      // bytes: copying here too made a 100 KB 304 through the interceptor 7% slower (12 µs of 175,
      // interleaved in one process). A body stored as text has no bytes to lend: its slice is a conversion.
      if (typeof body !== 'string' && canBorrow(handler)) handler.onLentData(this, body!.subarray(start, end))
      // A copy: consumers own the chunks they get, and must not be able to change the stored body.
      else handler.onResponseData?.(this, bodySlice(body!, start, end))
    }
    if (this.#paused || this.#aborted || this.#done) return
    this.#done = true
    endAnswer(handler, this, this.#response.trailers ?? {})
  }

  pause (): void {
    this.#paused = true
  }

  resume (): void {
    if (!this.#paused) return
    this.#paused = false
    setImmediate(() => {
      try {
        this.#flow()
      } catch (error) {
        this.#fail(error as Error)
      }
    })
  }

  abort (reason?: Error): void {
    this.#fail(abortReason(reason))
  }

  /**
   * Ends the play with `reason`. What goes wrong here ends it through this, not abort(), which a
   * handler may have replaced on its controller (undici's dump interceptor does).
   */
  #fail (reason: Error): void {
    if (this.#aborted || this.#done) return
    this.#aborted = true
    this.#reason = reason
    this.#handler.onResponseError?.(this, reason)
  }
}
