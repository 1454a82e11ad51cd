/**
 * Background revalidations of stale-while-revalidate hits (RFC 5861 §3): one per variant at a time,
 * however many hits arrive meanwhile. A claim lapses after the request's retry deadline, so that a
 * refresh its caller never ran does not block the next one for ever.
 *
 * A refresh is nobody's request: no caller can wait for it or abort it. So `flush()` waits for the
 * refreshes under way, as for the writes they lead to, and `close()` aborts them: left running, one
 * would hold its connection (and an `agent.close()` after, which waits for it) until the origin
 * answered, and then fail to write to the closed cache. A refresh starts its exchange a moment after
 * the hit that claimed it (a turn of the event loop, a connect): flush() waits for that start, so
 * that a hit, then flush(), finds the refresh done. One still queued for a connection after
 * START_WAIT_MS (behind a long response on a pool of few connections) has no timeout running yet,
 * and a flush() waiting for it could wait without end: it is not waited for, and close() has it
 * aborted when it starts.
 */
import type { CacheEntry } from './entry.js'
import type { ResolvedRetry } from './retry.js'
import { variantId } from './variants.js'

/** How long flush() waits for a claimed refresh to start its exchange. */
const START_WAIT_MS = 1000

/** What ends a refresh under way: the controller of its exchange, once it has one. */
export interface Abortable {
  abort (reason: Error): void
}

export class Refreshes {
  readonly #now: () => number
  /** Variants being revalidated: when each claim lapses, and the refresh that holds it. */
  readonly #claims = new Map<string, { readonly until: number, readonly refresh: object }>()
  /** Refreshes started and not yet ended: what aborts each, and what tells of its end. */
  readonly #running = new Map<object, { controller: Abortable, readonly ended: () => void }>()
  /** Refreshes claimed and not yet started or ended: what tells of that. */
  readonly #starting = new Map<object, () => void>()
  /** Why refreshes end now, once the cache is closed. */
  #closed: Error | undefined

  constructor (now: () => number) {
    this.#now = now
  }

  /** Whether a refresh of this variant is claimed and its claim has not lapsed. */
  underWay (entry: CacheEntry): boolean {
    return (this.#claims.get(variantId(entry))?.until ?? 0) > this.#now()
  }

  /** Claims the refresh of this variant for `refresh`; `false` when one is under way, or the cache is closed. */
  claim (entry: CacheEntry, retry: ResolvedRetry, refresh: object): boolean {
    if (this.#closed !== undefined || this.underWay(entry)) return false
    this.#claims.set(variantId(entry), { until: this.#now() + retry.deadline, refresh })
    return true
  }

  /** Settles once the claimed refresh `refresh` has started its exchange or ended, or START_WAIT_MS have passed. */
  starting (refresh: object): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#leftStarting(refresh), START_WAIT_MS)
      // A refresh that never starts must not keep the process alive.
      timer.unref()
      this.#starting.set(refresh, () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  #leftStarting (refresh: object): void {
    this.#starting.get(refresh)?.()
    this.#starting.delete(refresh)
  }

  /**
   * The claimed refresh `refresh` started its exchange, steered by `controller`: a promise that
   * settles once end() is told of it, or `undefined` when the cache is closed and it is aborted.
   */
  started (refresh: object, controller: Abortable): Promise<void> | undefined {
    this.#leftStarting(refresh)
    if (this.#closed !== undefined) {
      controller.abort(this.#closed)
      return undefined
    }
    // Started again: another hop or attempt of the same refresh (an interceptor below the cache
    // that follows a redirect or retries), steered by its own controller from now on. It ends once.
    const running = this.#running.get(refresh)
    if (running !== undefined) {
      running.controller = controller
      return undefined
    }
    return new Promise((resolve) => this.#running.set(refresh, { controller, ended: resolve }))
  }

  /** The refresh of this variant ended, however it went. Its claim ends, unless it lapsed and another refresh holds one now. */
  end (entry: CacheEntry, refresh: object): void {
    const id = variantId(entry)
    if (this.#claims.get(id)?.refresh === refresh) this.#claims.delete(id)
    this.#leftStarting(refresh)
    this.#running.get(refresh)?.ended()
    this.#running.delete(refresh)
  }

  /** No refresh starts from now on, and those under way are aborted with `reason`. */
  close (reason: Error): void {
    this.#closed = reason
    for (const { controller } of this.#running.values()) controller.abort(reason)
  }

  get size (): number {
    return this.#claims.size
  }
}
