/**
 * Single-flight: one origin exchange, any number of callers. Each caller is a Subscriber (src/adapters/subscriber.ts) with a
 * controller and an ordered queue of its own; a caller that joins late (even mid-body) is first
 * caught up from what the exchange has delivered so far, then follows it live. A caller that
 * aborts leaves and the others go on; the exchange is aborted only when every caller has left.
 *
 * undici's own `interceptors.deduplicate` was the first choice, but it sends a caller that arrives
 * once the body has begun to the origin on its own, and a leader's abort fails every follower.
 *
 * Bounds: the catch-up history is kept only up to `limit` bytes (past it, late callers make their
 * own request). A paused caller queues up to `limit` bytes while others read on; past that the
 * origin is paused until it catches up, as its own connection would be, so that a caller that
 * reads as fast as it can (fetch pauses whenever its body's small buffer is full) is never
 * failed for being slower than another. One that stays that far behind for STALL_MS has stopped
 * reading: it fails with ERR_SHARED_BODY_OVERRUN (as undici's deduplicate fails one past its
 * buffer) and the others go on. The origin is also paused when every caller is.
 *
 * A response meant for one user (`private`, or Set-Cookie, in a shared cache) is not shared: the
 * callers that joined go to the origin on their own, keeping the controller they already hold.
 */
import type { Dispatcher } from 'undici'
import { CachedFetchError, type RequestInfo } from '../errors.js'
import type { CacheEvent, EventName, SharedCount } from '../status.js'
import { Subscriber, type Exchange, type FlightEvent as Event, type LendableHandler } from './subscriber.js'

/** How long a caller `limit` bytes behind may hold the exchange back before it counts as stopped. */
const STALL_MS = 1000

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Headers = Record<string, string | string[] | undefined>

/** What the interceptor tells a flight: its bounds, and what to do with callers it cannot serve. */
export interface FlightOptions {
  readonly request: RequestInfo
  readonly limit: number
  /** Whether a response may go to callers other than the one whose request fetched it. */
  readonly shareable: (headers: Headers) => boolean
  /**
   * Dispatches the same request for one caller that cannot share this exchange; `countable`: its
   * lookup found a stored response, and is counted by that request (else it counted as it looked).
   */
  readonly alone: (handler: Handler, countable: boolean) => void
  /** The exchange is over: no caller can join any more. */
  readonly onEnd: () => void
  /** Counts a lookup's outcome again, for a caller that joined with a stored response of its own. */
  readonly report: (name: EventName, event: CacheEvent) => void
}

export class Broadcast implements LendableHandler, SharedCount, Exchange {
  readonly #subscribers = new Set<Subscriber>()
  readonly #options: FlightOptions
  readonly #limit: number
  /** Everything so far, for callers that join late; dropped past `limit` bytes of body. */
  #history: Event[] | undefined = []
  #historyBytes = 0
  #upstream: Controller | undefined
  #upstreamPaused = false
  /**
   * How many callers are paused, and those more than `limit` bytes behind: kept as callers change,
   * so that deciding whether the origin flows costs the same for a thousand callers as for one.
   */
  #pausedCount = 0
  readonly #behind = new Set<Subscriber>()
  #done = false
  /** The caller the exchange waits for, and when it counts as stopped. */
  #stalled: { readonly subscriber: Subscriber, readonly timer: NodeJS.Timeout } | undefined
  /**
   * What the first caller's lookup counted (counted()), and whether the callers that joined with a
   * stored response of their own count it too now: from the answer's start, once those that cannot
   * share it have gone alone (their own exchanges count them).
   */
  #countedName: EventName | undefined
  #countedEvent: CacheEvent | undefined
  #counting = false
  /** Some caller joined with a stored response of its own: mostly none has, and no loop is made. */
  #countables = false

  constructor (options: FlightOptions) {
    this.#options = options
    this.#limit = options.limit
  }

  /**
   * Adds a caller; `false` when it could no longer see the whole response and must go alone.
   * `countable`: its lookup found a stored response, so its count is the exchange's outcome.
   */
  join (handler: Handler, collapsed: boolean, countable = false): boolean {
    if (this.#history === undefined || this.#done) return false
    const subscriber = new Subscriber(this, handler, collapsed, countable)
    this.#countables ||= countable
    if (countable && this.#counting) this.#options.report(this.#countedName!, this.#countedEvent!)
    // A copy of the history as it is now, so that nothing the exchange does before the caller's
    // first callback (it never runs inside dispatch()) can take any of it away.
    for (const event of this.#history) subscriber.push(event, true)
    this.#subscribers.add(subscriber)
    queueMicrotask(() => subscriber.start())
    this.flow()
    return true
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#upstream = controller
    this.#publish({ type: 'request-start', context })
  }

  counted (name: EventName, event: CacheEvent): void {
    this.#countedName = name
    this.#countedEvent = event
  }

  onResponseStart (controller: Controller, status: number, headers: Headers, statusText?: string): void {
    this.#upstream = controller
    if (!this.#options.shareable(headers)) {
      this.#history = undefined
      for (const subscriber of [...this.#subscribers]) {
        if (!subscriber.collapsed) continue
        this.#remove(subscriber)
        this.#options.alone(subscriber.solo(), subscriber.countable)
      }
      // Its own caller may have left before the answer came: then nobody wants this exchange.
      if (this.#subscribers.size === 0) controller.abort(new Error('no caller is left for this response'))
    }
    this.#countJoined()
    this.#publish({ type: 'response-start', status, headers, statusText })
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    this.#data(controller, { type: 'data', chunk })
  }

  /**
   * As onResponseData, for a stored response played to the flight (src/adapters/replay.ts): `view`
   * shows bytes that must never change, so every caller gets a copy.
   */
  onLentData (controller: Controller, view: Buffer): void {
    this.#data(controller, { type: 'data', chunk: view, lent: true })
  }

  #data (controller: Controller, event: Event & { type: 'data' }): void {
    this.#upstream = controller
    if (this.#history !== undefined) {
      this.#historyBytes += event.chunk.byteLength
      if (this.#historyBytes > this.#limit) this.#history = undefined
    }
    this.#publish(event)
    this.flow()
  }

  onResponseEnd (_controller: Controller, trailers: Headers): void {
    this.#finish({ type: 'end', trailers })
  }

  onResponseError (_controller: Controller, error: Error): void {
    this.#countJoined()
    this.#finish({ type: 'error', error })
  }

  /**
   * The callers that joined with a stored response of their own count what the first caller's
   * lookup counted, once it is known: when the answer starts, or fails with none.
   */
  #countJoined (): void {
    if (this.#countedName === undefined || this.#counting) return
    this.#counting = true
    if (this.#countables) for (const subscriber of this.#subscribers) if (subscriber.countable) this.#options.report(this.#countedName, this.#countedEvent!)
  }

  #finish (event: Event): void {
    this.#done = true
    this.#wait(undefined)
    this.#history = undefined
    this.#options.onEnd()
    this.#publish(event)
  }

  #publish (event: Event): void {
    // A chunk kept for late callers, read by several, or lent, is copied for each (a caller owns what
    // it gets), or lent to a caller whose handler can borrow it (Subscriber.push).
    const shared = this.#history !== undefined || this.#subscribers.size > 1 || (event.type === 'data' && event.lent === true)
    // The callers as they are, not a copy: one that leaves on the way is skipped, and one that joins
    // on the way (from inside a callback) is reached last, after the history it was given, which
    // takes this event only once the loop is over.
    for (const subscriber of this.#subscribers) subscriber.push(event, shared)
    this.#history?.push(event)
  }

  /**
   * A caller paused (+1) or resumed (-1). Only a caller still here counts: one that has left may
   * still call pause() or resume() (undici's controllers take them after abort() as no-ops), and
   * counting those would pause the origin for nobody, or not for the callers left.
   */
  paused (subscriber: Subscriber, change: 1 | -1): void {
    if (!this.#subscribers.has(subscriber)) return
    this.#pausedCount += change
    this.flow()
  }

  /** A caller's queue grew or shrank. */
  queued (subscriber: Subscriber): void {
    const over = subscriber.queuedBytes > this.#limit && this.#subscribers.has(subscriber)
    if (over === this.#behind.has(subscriber)) return
    if (over) this.#behind.add(subscriber)
    else this.#behind.delete(subscriber)
    this.flow()
  }

  /** The origin flows unless every caller is paused, or one is too far behind the others. */
  flow (): void {
    if (this.#done) return
    let paused = this.#subscribers.size > 0 && this.#pausedCount >= this.#subscribers.size
    // Mostly nobody is behind: then no iterator is made (this runs for every chunk).
    const behind: Subscriber | undefined = this.#behind.size === 0 ? undefined : this.#behind.values().next().value
    // Only a caller that holds others back can be failed for it.
    this.#wait(paused ? undefined : behind)
    if (behind !== undefined) paused = true
    if (paused === this.#upstreamPaused || this.#upstream === undefined) return
    this.#upstreamPaused = paused
    if (paused) this.#upstream.pause()
    else this.#upstream.resume()
  }

  /** The exchange waits for `behind` (none: for nobody); if it is still behind after STALL_MS, it fails. */
  #wait (behind: Subscriber | undefined): void {
    if (this.#stalled?.subscriber === behind) return
    clearTimeout(this.#stalled?.timer)
    this.#stalled = undefined
    if (behind === undefined) return
    const timer = setTimeout(() => {
      this.#stalled = undefined
      behind.fail(new CachedFetchError('ERR_SHARED_BODY_OVERRUN',
        `a caller sharing this response stopped reading, more than ${this.#limit} bytes (maxEntrySize) behind the others for ${STALL_MS} ms`, this.#options.request))
    }, STALL_MS)
    // A stalled exchange must not keep the process alive by itself.
    timer.unref()
    this.#stalled = { subscriber: behind, timer }
  }

  leave (subscriber: Subscriber, reason: Error): void {
    this.#remove(subscriber)
    // One that joined with a stored response of its own and left before the exchange's outcome
    // was counted gets no answer to count it by: a miss, as such a lookup of its own would be (Answers.noAnswer, src/answers.ts).
    if (subscriber.countable && !this.#counting) this.#options.report('miss', { method: this.#options.request.method, url: this.#options.request.url })
    if (this.#subscribers.size === 0 && !this.#done) {
      this.#upstream?.abort(reason)
      return
    }
    this.flow()
  }

  /** A caller got its last callback. */
  finished (subscriber: Subscriber): void {
    // Once the exchange is over nothing counts callers any more: it is let go with all of them.
    if (this.#done) return
    this.#remove(subscriber)
    this.flow()
  }

  #remove (subscriber: Subscriber): void {
    if (!this.#subscribers.delete(subscriber)) return
    if (subscriber.paused) this.#pausedCount--
    this.#behind.delete(subscriber)
  }
}
