/**
 * Single-flight: one origin exchange, any number of callers. Each caller is a Subscriber with a
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
import { endToEndFields } from '../entry.js'
import { endAnswer } from './answer-end.js'
import { CachedFetchError, type RequestInfo } from '../errors.js'
import { memoizeWeakly } from '../memo.js'
import type { CacheEvent, EventName, SharedCount } from '../status.js'

/** How long a caller `limit` bytes behind may hold the exchange back before it counts as stopped. */
const STALL_MS = 1000

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Headers = Record<string, string | string[] | undefined>

type Event =
  | { readonly type: 'request-start', readonly context: unknown }
  | { readonly type: 'response-start', readonly status: number, readonly headers: Headers, readonly statusText: string | undefined }
  /**
   * `lent`: bytes that must never change. Handed to the flight, a view of a stored body, which each
   * caller gets a copy of; in a caller's queue, a chunk its handler borrows (onLentData).
   */
  | { readonly type: 'data', readonly chunk: Buffer, readonly lent?: true }
  | { readonly type: 'end', readonly trailers: Headers }
  | { readonly type: 'error', readonly error: Error }

/**
 * A handler that can be lent chunks: `onLentData` is given bytes it must neither change nor hand
 * out as they are (it copies them first, if ever), so a flight need not copy them for it.
 * cachedFetch's own handler (src/adapters/follower.ts) is one.
 */
export interface LendableHandler extends Handler {
  onLentData: (controller: Controller, chunk: Buffer) => void
}

export function canBorrow (handler: Handler): handler is LendableHandler {
  return typeof (handler as Partial<LendableHandler>).onLentData === 'function'
}

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

export class Broadcast implements LendableHandler, SharedCount {
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

/** One caller of a shared exchange, and the controller it holds. */
class Subscriber implements Controller {
  /**
   * The exchange, until this caller is done with it. Let go then: undici keeps a caller's
   * controller (this) reachable from the response body it made for as long as that lives, and in
   * a process where V8 has begun to allocate such per-request objects straight into the old
   * generation (allocation-site pretenuring: after a run of hits, say), that garbage lives until
   * the next full collection and keeps what it references alive through every scavenge before it.
   * Held, that was the whole exchange of every 304 (its history, fields, handlers, the lookup):
   * scavenges in a 1 KB 304 loop after the benchmark's other scenarios took 3.3–4.0 ms each, and
   * 2.2–2.4 ms once it was let go.
   */
  #flight: Broadcast | undefined
  readonly handler: Handler
  /** Joined an exchange another caller started. */
  readonly collapsed: boolean
  /** Joined with a stored response of its own: counted as the exchange's first lookup was (Broadcast#counting). */
  readonly countable: boolean
  /** The handler can be lent chunks (LendableHandler): what others get copied, it is lent. */
  readonly #borrows: boolean
  readonly #queue: Event[] = []
  #queuedBytes = 0
  #started = false
  #draining = false
  #paused = false
  #aborted = false
  #done = false
  #reason: Error | null = null
  /** Left the shared exchange for one of its own (see solo()); `#own` steers that one once it starts. */
  #detached = false
  #own: Controller | undefined

  constructor (flight: Broadcast, handler: Handler, collapsed: boolean, countable: boolean) {
    this.#flight = flight
    this.handler = handler
    this.collapsed = collapsed
    this.countable = countable
    this.#borrows = canBorrow(handler)
  }

  get aborted (): boolean { return this.#aborted }
  get paused (): boolean { return this.#paused }
  get reason (): Error | null { return this.#reason }
  get queuedBytes (): number { return this.#queuedBytes }

  /** `shared`: a data event's chunk is not this caller's to own; its handler is lent it, or given a copy. */
  push (event: Event, shared: boolean): void {
    if (this.#aborted || this.#done) return
    if (event.type === 'data') {
      const lent = shared && this.#borrows
      const chunk = shared && !lent ? Buffer.from(event.chunk) : event.chunk
      this.#queue.push(lent ? { type: 'data', chunk, lent } : { type: 'data', chunk })
      this.#queuedBytes += chunk.byteLength
      this.#queuedChanged()
    } else {
      this.#queue.push(event)
    }
    this.#drain()
  }

  /**
   * A handler for an exchange of this caller's own, after it left the shared one: its events join
   * this caller's queue (after whatever it already had), and this caller's controller now steers it.
   */
  solo (): Handler {
    this.#detached = true
    return {
      onRequestStart: (controller) => {
        this.#own = controller
        if (this.#aborted) controller.abort(this.#reason!)
        else if (this.#paused) controller.pause()
      },
      onResponseStart: (_c, status, headers, statusText) => this.push({ type: 'response-start', status, headers, statusText }, false),
      onResponseData: (_c, chunk) => this.push({ type: 'data', chunk }, false),
      onResponseEnd: (_c, trailers) => this.push({ type: 'end', trailers }, false),
      onResponseError: (_c, error) => this.push({ type: 'error', error }, false)
    }
  }

  /** First callbacks: on a microtask after join(), never inside dispatch(). */
  start (): void {
    this.#started = true
    this.#drain()
  }

  /** Delivers queued events in order; a pause holds back body and end, not the response start. */
  #drain (): void {
    if (!this.#started || this.#draining) return
    this.#draining = true
    try {
      while (this.#queue.length > 0 && !this.#aborted && !this.#done) {
        const event = this.#queue[0]!
        if (this.#paused && (event.type === 'data' || event.type === 'end')) break
        this.#queue.shift()
        if (event.type === 'data') {
          this.#queuedBytes -= event.chunk.byteLength
          this.#queuedChanged()
        }
        this.#deliver(event)
      }
    } finally {
      this.#draining = false
    }
  }

  #queuedChanged (): void {
    if (!this.#detached) this.#flight?.queued(this)
  }

  #finished (): void {
    this.#flight?.finished(this)
    this.#flight = undefined
  }

  #deliver (event: Event): void {
    const handler = this.handler
    try {
      switch (event.type) {
        case 'request-start':
          handler.onRequestStart?.(this, event.context)
          break
        case 'response-start':
          handler.onResponseStart?.(this, event.status, this.collapsed && !this.#detached ? collapsedHeaders(event.headers) : event.headers, event.statusText)
          break
        case 'data':
          if (event.lent === true) (handler as LendableHandler).onLentData(this, event.chunk)
          else handler.onResponseData?.(this, event.chunk)
          break
        case 'end':
          this.#done = true
          try {
            endAnswer(handler, this, event.trailers)
          } finally {
            this.#finished()
          }
          break
        case 'error':
          this.#done = true
          try {
            handler.onResponseError?.(this, event.error)
          } finally {
            this.#finished()
          }
      }
    } catch (error) {
      // A caller's handler that throws is aborted with that error; the others go on.
      this.fail(error as Error)
    }
  }

  pause (): void {
    if (this.#detached) {
      this.#paused = true
      this.#own?.pause()
      return
    }
    if (this.#paused) return
    this.#paused = true
    this.#flight?.paused(this, 1)
  }

  resume (): void {
    if (!this.#paused) return
    this.#paused = false
    if (!this.#detached) this.#flight?.paused(this, -1)
    setImmediate(() => {
      this.#drain()
      if (this.#detached) this.#own?.resume()
      else this.#flight?.flow()
    })
  }

  abort (reason?: Error): void {
    this.fail(reason ?? new Error('aborted'))
  }

  /**
   * Ends this caller with `reason`. The exchange and this caller's own failures end it through
   * this, not abort(), which its handler may have replaced on its controller (undici's dump
   * interceptor does).
   */
  fail (reason: Error): void {
    if (this.#aborted || this.#done) return
    this.#aborted = true
    this.#reason = reason
    this.#queue.length = 0
    this.#queuedBytes = 0
    try {
      this.handler.onResponseError?.(this, this.#reason)
    } catch {
      // This caller's bug is its own: it must not reach the exchange the others share.
    } finally {
      // A detached caller's own exchange is aborted when it starts, if it has not yet.
      if (this.#detached) this.#own?.abort(this.#reason)
      else {
        this.#flight?.leave(this, this.#reason)
        this.#flight = undefined
      }
    }
  }
}

/**
 * The answer as a caller that joined another's exchange gets it. It came on the first caller's
 * connection, so the fields that describe that connection are not passed on (RFC 9110 §7.6.1,
 * as a stored response has none: RFC 9111 §3.1); a Keep-Alive timeout, say, says nothing of the
 * joined caller's own. RFC 9211 §2.8: `collapsed` marks a response shared with another request;
 * ours is the last member.
 * Made once per answer: its collapsed callers share one fields object, as undici's own
 * `interceptors.deduplicate` hands all its waiting handlers the one it got. A handler reads the
 * fields it is given; one that wrote into them would change them for the others, there as here.
 */
const collapsedHeaders = memoizeWeakly(1024, (headers: Headers): Headers => {
  const fields = endToEndFields(headers)
  const status = fields['cache-status']
  if (typeof status === 'string') fields['cache-status'] = `${status}; collapsed`
  return fields
})
