/**
 * A `cachedFetch` caller that follows another caller's exchange in flight instead of making one
 * through undici.fetch: 1000 identical misses at once would otherwise cost 1000 runs of fetch's
 * machinery (several cache hits each) for one origin request. The follower joins the leader's
 * single-flight (src/adapters/broadcast.ts) and, when the answer is one fetch would hand over
 * unchanged (src/adapters/fetched-response.ts), builds the Response itself, its body taken as it
 * comes (src/adapters/arriving-body.ts). Any other answer (a redirect to follow, a body to decode)
 * is handed to undici.fetch as it stands: fetch's first dispatch is given this exchange, so the
 * origin still sees one request.
 *
 * A caller with nobody to follow, whose request has a shape fetch has sent before, is a follower
 * of its own exchange: it sends what fetch sent (src/adapters/sent.ts) with a follower as the
 * handler, and is answered the same way.
 */
import type { Dispatcher, Response } from 'undici'
import type { Flights } from '../flight.js'
import { without } from '../maps.js'
import { ArrivingBody } from './arriving-body.js'
import type { Broadcast } from './broadcast.js'
import type { LendableHandler } from './subscriber.js'
import { hasNoContent } from './content.js'
import { appendFields, FetchedResponse, ownHeaders, servableStatus, unencoded } from './fetched-response.js'
import { onAbort, removeWhenCollected } from './abort-listeners.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Fields = Record<string, string | string[] | undefined>

/** undici.fetch for this request, its first dispatch handed to `attach` rather than sent. */
export type Handoff = (attach: (handler: Handler) => void) => Promise<Response>

export interface FollowedRequest {
  readonly method: string
  readonly url: string
  readonly signal: AbortSignal | undefined
  /** Its lookup found a stored response: it counts what the flight's lookup counted (src/adapters/broadcast.ts). */
  readonly countable?: boolean
  /** Called once the caller has joined the flight (its miss is counted then, src/adapters/fetch.ts). */
  readonly joined?: () => void
}

/** A leader's flight, and its key in `cache.flights`. */
interface Flight {
  readonly broadcast: Broadcast
  readonly key: string
}

/**
 * One cachedFetch's plain requests on their way to the origin, by request: each leader's flight once
 * its dispatch has reached the interceptor (none, when it made no flight: a hit, say). A leader
 * leaves when its answer has come; callers after that make their own request (sent as fetch sent
 * the leader's, or through undici.fetch), which still joins the exchange while its body is on its way.
 */
export class Leaders {
  #flights = new Map<string, Promise<Flight | undefined>>()

  has (key: string): boolean {
    return this.#flights.has(key)
  }

  get size (): number {
    return this.#flights.size
  }

  /** Runs `send` as the leader for `key`; it passes `onFlight` to the interceptor (ON_FLIGHT). */
  async lead<T> (key: string, send: (onFlight: (broadcast: Broadcast | undefined, key?: string) => void) => Promise<T>): Promise<T> {
    let found!: (flight: Flight | undefined) => void
    this.#flights.set(key, new Promise((resolve) => { found = resolve }))
    try {
      // Only the first dispatch's word counts: a later one (after a redirect) is for another request.
      return await send((broadcast, flightKey) => found(broadcast === undefined ? undefined : { broadcast, key: flightKey! }))
    } finally {
      found(undefined)
      this.#flights = without(this.#flights, key)
    }
  }

  /**
   * The Response of a caller that follows the leader for `key`; `undefined` when it must make its
   * own request: there is no leader, or its request made no flight, or an invalidation took the
   * flight out of `flights` (its answer may predate the invalidation), or it can no longer be joined.
   */
  async follow (key: string, flights: Flights<unknown>, request: FollowedRequest, handoff: Handoff): Promise<Response | undefined> {
    const flight = await this.#flights.get(key)
    if (flight === undefined || flights.get(flight.key) !== flight.broadcast) return undefined
    return await Follower.follow(flight.broadcast, request, handoff)
  }
}

/** What settles a follower's Response once it has been: nothing (a closure made here would keep the promise). */
function settled (): void {}

interface Settle {
  readonly resolve: (response: Response) => void
  readonly reject: (error: unknown) => void
}

/** A follower's handler for the exchange; it settles the caller's Response once the answer starts. */
export class Follower implements LendableHandler {
  readonly #request: FollowedRequest
  readonly #handoff: Handoff
  #resolve: (response: Response) => void
  #reject: (error: unknown) => void
  #controller: Controller | undefined
  #context: unknown
  #responded = false
  /** The body of the Response built here (none for HEAD, 204, …). */
  #body: ArrivingBody | undefined
  /** Events that came while the exchange was being handed to fetch, then fetch's handler. */
  #held: Array<(handler: Handler, controller: Controller) => void> | undefined
  #handedTo: Handler | undefined
  readonly #onAbort = (): void => {
    const reason = this.#request.signal!.reason as Error
    // Before the exchange has started there is nothing to abort yet: the caller is answered now,
    // and the exchange left when it starts (onRequestStart).
    if (this.#controller === undefined) this.#reject(reason)
    else this.#controller.abort(reason)
    // As fetch's: a body that has all come but is not read to its end yet fails too.
    this.#body?.fail(reason)
  }

  // The promise is the caller's: once settled, the follower (which the caller's signal holds) keeps no way to the Response.
  private constructor (request: FollowedRequest, handoff: Handoff, settle: Settle) {
    this.#request = request
    this.#handoff = handoff
    this.#resolve = (response) => {
      this.#resolve = this.#reject = settled
      settle.resolve(response)
    }
    this.#reject = (error) => {
      this.#resolve = this.#reject = settled
      settle.reject(error)
    }
  }

  /**
   * Follows `flight`; `undefined` when it cannot be joined any more (the caller makes its own
   * request). The caller's signal is watched only once it has joined.
   */
  static follow (flight: Broadcast, request: FollowedRequest, handoff: Handoff): Promise<Response> | undefined {
    const { follower, response } = Follower.#create(request, handoff)
    if (!flight.join(follower, true, request.countable === true)) return undefined
    request.joined?.()
    follower.#watch()
    return response
  }

  /**
   * Sends `opts`, the request undici.fetch sent for a call of the same shape before, to this
   * caller's path (src/adapters/sent.ts), through `dispatcher`, and answers as fetch would. The
   * options are this request's own (`SentRequests.get` makes them): a dispatcher may write into them.
   */
  static send (dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions, request: FollowedRequest, handoff: Handoff): Promise<Response> {
    const { follower, response } = Follower.#create(request, handoff)
    if (!follower.#watch()) return response
    try {
      dispatcher.dispatch(opts, follower)
    } catch (error) {
      follower.#stopWatching()
      follower.#reject(new TypeError('fetch failed', { cause: error }))
    }
    return response
  }

  static #create (request: FollowedRequest, handoff: Handoff): { follower: Follower, response: Promise<Response> } {
    let settle!: Settle
    const response = new Promise<Response>((resolve, reject) => { settle = { resolve, reject } })
    return { follower: new Follower(request, handoff, settle), response }
  }

  /**
   * Watches the caller's signal; `false` when it was aborted already (while the caller waited for
   * a leader's flight, say), and the caller has been answered with its reason.
   */
  #watch (): boolean {
    const signal = this.#request.signal
    if (signal?.aborted === true) {
      this.#onAbort()
      return false
    }
    if (signal !== undefined) onAbort(signal, this.#onAbort)
    return true
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#controller = controller
    this.#context = context
    if (this.#request.signal?.aborted === true) this.#onAbort()
  }

  onResponseStart (controller: Controller, status: number, fields: Fields, statusText?: string): void {
    if (this.#forward((h, c) => h.onResponseStart?.(c, status, fields, statusText))) return
    this.#responded = true
    const response = this.#build(status, fields, statusText ?? '')
    if (response !== undefined) {
      this.#resolve(response)
      return
    }
    // From here on fetch answers the caller, and watches its signal itself.
    this.#stopWatching()
    this.#held = [(h, c) => h.onResponseStart?.(c, status, fields, statusText)]
    let attached = false
    this.#handoff((handler) => {
      attached = true
      this.#handedTo = handler
      handler.onRequestStart?.(controller, this.#context)
      const held = this.#held!
      this.#held = undefined
      for (const replay of held) replay(handler, controller)
    }).then(this.#resolve, (error: unknown) => {
      // fetch gave up before its dispatch (an abort): nobody is left to read this exchange.
      if (!attached) controller.abort(error as Error)
      this.#reject(error)
    })
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    if (this.#forward((h, c) => h.onResponseData?.(c, chunk))) return
    this.#body?.push(chunk)
  }

  /**
   * A chunk lent by a flight (shared with other callers, or a view of a stored body): it goes into
   * the body as it is, which copies it before handing it out (src/adapters/arriving-body.ts); fetch,
   * which hands out what it is given, gets a copy.
   */
  onLentData (controller: Controller, chunk: Buffer): void {
    if (this.#forward((h, c) => h.onResponseData?.(c, Buffer.from(chunk)))) return
    this.#body?.push(chunk)
  }

  onResponseEnd (controller: Controller, trailers: Fields): void {
    if (this.#forward((h, c) => h.onResponseEnd?.(c, trailers))) return
    // A body not read yet is watched until it is (an abort fails it, as fetch's): the caller's
    // signal is let go of then (ArrivingBody's `settled`).
    if (this.#body === undefined) this.#stopWatching()
    else this.#body.end()
  }

  onResponseError (controller: Controller, error: Error): void {
    if (this.#forward((h, c) => h.onResponseError?.(c, error))) return
    this.#stopWatching()
    const signal = this.#request.signal
    // As fetch fails: with the signal's reason when the caller aborted, else a TypeError.
    const aborted = signal?.aborted === true ? signal.reason as unknown : undefined
    if (!this.#responded) this.#reject(aborted ?? new TypeError('fetch failed', { cause: error }))
    else this.#body?.fail(aborted ?? new TypeError('terminated', { cause: error }))
  }

  /** Whether fetch has the exchange (the event went to it, or waits for it): nothing else to do here. */
  #forward (event: (handler: Handler, controller: Controller) => void): boolean {
    if (this.#handedTo !== undefined) event(this.#handedTo, this.#controller!)
    else if (this.#held !== undefined) this.#held.push(event)
    else return false
    return true
  }

  /** The Response fetch would have returned, or `undefined` when fetch would change the answer. */
  #build (status: number, fields: Fields, statusText: string): Response | undefined {
    if (!servableStatus(status, statusText)) return undefined
    const body = hasNoContent(this.#request.method, status) ? null : new ArrivingBody(this.#controller!, () => { this.#stopWatching() })
    const response = new FetchedResponse(this.#request.url, body, { status, statusText })
    // The fields go into the Response's own Headers: given a Headers made first, the Response
    // copied it and validated every field again (2 KB of the 29 a 1 KB 304 allocated).
    const headers = ownHeaders(response)
    try {
      appendFields(headers, fields)
    } catch {
      return undefined // a field undici's Headers refuses, which fetch itself hands over
    }
    if (!unencoded(headers.get('content-encoding'))) return undefined
    if (body !== null) this.#body = body
    const signal = this.#request.signal
    // A Response collected before its body was read to its end: the signal lets go of the follower (and its body).
    if (signal !== undefined) removeWhenCollected(response, signal, this.#onAbort)
    return response
  }

  #stopWatching (): void {
    this.#request.signal?.removeEventListener('abort', this.#onAbort)
  }
}
