/**
 * One caller of a single-flight exchange (src/adapters/broadcast.ts): the controller its handler
 * holds, and an ordered queue of what the exchange delivered that the caller has not taken yet
 * (it may be paused, or join late and be caught up first). It tells its exchange when it pauses,
 * resumes, falls behind, leaves or is done; and it can leave the exchange for one of its own,
 * keeping its handler's controller (`solo()`).
 */
import type { Dispatcher } from 'undici'
import { abortReason } from './request-aborted.js'
import { endToEndFields } from '../entry.js'
import { endAnswer } from './answer-end.js'
import { memoizeWeakly } from '../memo.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Headers = Record<string, string | string[] | undefined>

/** What an exchange delivers, as each of its callers is handed it. */
export type FlightEvent =
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


/** What a caller tells the exchange it shares (Broadcast). */
export interface Exchange {
  /** It paused (+1) or resumed (-1). */
  paused: (subscriber: Subscriber, change: 1 | -1) => void
  /** Its queue grew or shrank. */
  queued: (subscriber: Subscriber) => void
  /** Whether the origin may flow is to be decided again. */
  flow: () => void
  /** It left (its caller aborted), for `reason`. */
  leave: (subscriber: Subscriber, reason: Error) => void
  /** It got its last callback. */
  finished: (subscriber: Subscriber) => void
}

/** One caller of a shared exchange, and the controller it holds. */
export class Subscriber implements Controller {
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
  #flight: Exchange | undefined
  readonly handler: Handler
  /** Joined an exchange another caller started. */
  readonly collapsed: boolean
  /** Joined with a stored response of its own: counted as the exchange's first lookup was (Broadcast#counting, src/adapters/broadcast.ts). */
  readonly countable: boolean
  /** The handler can be lent chunks (LendableHandler): what others get copied, it is lent. */
  readonly #borrows: boolean
  readonly #queue: FlightEvent[] = []
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

  constructor (flight: Exchange, handler: Handler, collapsed: boolean, countable: boolean) {
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
  push (event: FlightEvent, shared: boolean): void {
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

  #deliver (event: FlightEvent): void {
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
    this.fail(abortReason(reason))
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
