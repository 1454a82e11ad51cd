/**
 * Single-flight: one origin exchange, any number of callers. Each caller is a Subscriber with a
 * controller of its own; a caller that joins late (even mid-body) is first caught up from what the
 * exchange has delivered so far, then follows it live. A caller that aborts leaves, and the others
 * go on; the exchange is aborted only when every caller has left.
 *
 * undici's own `interceptors.deduplicate` was the first choice, but it sends a caller that arrives
 * once the body has begun to the origin on its own, and a leader's abort fails every follower.
 *
 * Bounds: the catch-up history is kept only up to `limit` bytes (past it, late callers make their
 * own request), and the origin is paused while any caller is paused, so no caller's backlog grows
 * beyond what is already on the way.
 */
import type { Dispatcher } from 'undici'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Headers = Record<string, string | string[] | undefined>

interface ResponseStart {
  readonly status: number
  readonly headers: Headers
  readonly statusText: string | undefined
}

export class Broadcast implements Handler {
  readonly #subscribers = new Set<Subscriber>()
  readonly #limit: number
  readonly #onEnd: () => void
  #history: Buffer[] | undefined = []
  #historyBytes = 0
  #upstream: Controller | undefined
  #upstreamPaused = false
  #context: unknown
  #requestStarted = false
  #response: ResponseStart | undefined
  #trailers: Headers | undefined
  #error: Error | undefined

  constructor (limit: number, onEnd: () => void) {
    this.#limit = limit
    this.#onEnd = onEnd
  }

  /** Adds a caller; `false` when it could no longer see the whole response and must go alone. */
  join (handler: Handler, collapsed: boolean): boolean {
    if (this.#history === undefined || this.#trailers !== undefined || this.#error !== undefined) return false
    const subscriber = new Subscriber(this, handler, collapsed)
    this.#subscribers.add(subscriber)
    // Never inside dispatch(): callbacks start on a microtask, from the state at that moment.
    queueMicrotask(() => this.#catchUp(subscriber))
    return true
  }

  #catchUp (subscriber: Subscriber): void {
    if (this.#requestStarted) subscriber.requestStart(this.#context)
    if (this.#response !== undefined) subscriber.responseStart(this.#response)
    for (const chunk of this.#history ?? []) subscriber.data(chunk)
    if (this.#trailers !== undefined) subscriber.end(this.#trailers)
    if (this.#error !== undefined) subscriber.error(this.#error)
    subscriber.live = true
    this.flow()
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#upstream = controller
    this.#requestStarted = true
    this.#context = context
    for (const s of this.#live()) s.requestStart(context)
  }

  onResponseStart (controller: Controller, status: number, headers: Headers, statusText?: string): void {
    this.#upstream = controller
    this.#response = { status, headers, statusText }
    for (const s of this.#live()) s.responseStart(this.#response)
    this.flow()
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    this.#upstream = controller
    if (this.#history !== undefined) {
      this.#historyBytes += chunk.byteLength
      if (this.#historyBytes > this.#limit) this.#history = undefined
      else this.#history.push(chunk)
    }
    for (const s of this.#live()) s.data(chunk)
  }

  onResponseEnd (_controller: Controller, trailers: Headers): void {
    this.#trailers = trailers
    this.#finish()
    for (const s of this.#live()) s.end(trailers)
  }

  onResponseError (_controller: Controller, error: Error): void {
    this.#error = error
    this.#finish()
    for (const s of this.#live()) s.error(error)
  }

  #finish (): void {
    this.#history = undefined
    this.#onEnd()
  }

  * #live (): Generator<Subscriber> {
    for (const s of this.#subscribers) if (s.live) yield s
  }

  /** The origin flows while no caller is paused. */
  flow (): void {
    let paused = false
    for (const s of this.#subscribers) if (s.paused) paused = true
    if (paused === this.#upstreamPaused || this.#upstream === undefined) return
    this.#upstreamPaused = paused
    if (paused) this.#upstream.pause()
    else this.#upstream.resume()
  }

  leave (subscriber: Subscriber, reason: Error): void {
    this.#subscribers.delete(subscriber)
    const done = this.#trailers !== undefined || this.#error !== undefined
    if (this.#subscribers.size === 0 && !done) {
      this.#upstream?.abort(reason)
      return
    }
    this.flow()
  }
}

/** One caller of a shared exchange, and the controller it holds. */
class Subscriber implements Controller {
  readonly #flight: Broadcast
  readonly #handler: Handler
  readonly #collapsed: boolean
  /** Caught up: live events reach it. */
  live = false
  #paused = false
  #aborted = false
  #done = false
  #reason: Error | null = null
  readonly #backlog: Buffer[] = []
  #ending: Headers | undefined

  constructor (flight: Broadcast, handler: Handler, collapsed: boolean) {
    this.#flight = flight
    this.#handler = handler
    this.#collapsed = collapsed
  }

  get aborted (): boolean { return this.#aborted }
  get paused (): boolean { return this.#paused }
  get reason (): Error | null { return this.#reason }

  requestStart (context: unknown): void {
    this.#guard(() => this.#handler.onRequestStart?.(this, context))
  }

  responseStart ({ status, headers, statusText }: ResponseStart): void {
    this.#guard(() => this.#handler.onResponseStart?.(this, status, this.#collapsed ? collapsedHeaders(headers) : headers, statusText))
  }

  data (chunk: Buffer): void {
    if (this.#paused || this.#backlog.length > 0) this.#backlog.push(chunk)
    else this.#guard(() => this.#handler.onResponseData?.(this, chunk))
  }

  end (trailers: Headers): void {
    if (this.#paused || this.#backlog.length > 0) {
      this.#ending = trailers
      return
    }
    this.#guard(() => {
      this.#done = true
      this.#handler.onResponseEnd?.(this, trailers)
    })
  }

  error (error: Error): void {
    if (this.#aborted || this.#done) return
    this.#done = true
    this.#handler.onResponseError?.(this, error)
  }

  pause (): void {
    this.#paused = true
    this.#flight.flow()
  }

  resume (): void {
    if (!this.#paused) return
    this.#paused = false
    setImmediate(() => this.#drain())
  }

  #drain (): void {
    while (!this.#paused && !this.#aborted && this.#backlog.length > 0) {
      const chunk = this.#backlog.shift()!
      this.#guard(() => this.#handler.onResponseData?.(this, chunk))
    }
    if (this.#paused || this.#aborted) return
    if (this.#ending !== undefined) this.end(this.#ending)
    this.#flight.flow()
  }

  abort (reason?: Error): void {
    if (this.#aborted || this.#done) return
    this.#aborted = true
    this.#reason = reason ?? new Error('aborted')
    this.#backlog.length = 0
    this.#handler.onResponseError?.(this, this.#reason)
    this.#flight.leave(this, this.#reason)
  }

  /** A caller's handler that throws is aborted with that error; the others go on. */
  #guard (call: () => void): void {
    if (this.#aborted || this.#done) return
    try {
      call()
    } catch (error) {
      this.abort(error as Error)
    }
  }
}

/** RFC 9211 §2.8: `collapsed` marks a response shared with another request. Ours is the last member. */
function collapsedHeaders (headers: Headers): Headers {
  const status = headers['cache-status']
  return typeof status === 'string' ? { ...headers, 'cache-status': `${status}; collapsed` } : headers
}
