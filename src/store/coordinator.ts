/**
 * Cross-process single-flight, the idempotency seeds' pattern: a process that misses claims the key
 * with a short lease in Redis and goes to the origin; another that misses the same key meanwhile
 * waits a bounded time for the entry to appear in L2, polling, then serves it. A holder whose
 * answer cannot serve the others (not storable, not fresh, failed) says so in the lease, and the
 * waiters go to the origin at once rather than one after another. A holder that dies leaves a
 * lease that lapses, and a waiter takes over. Redis failing, the wait running out, or the cache
 * closing send a waiter to the origin: the coordinator saves origin requests, it never costs one.
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RedisLink } from './redis.js'

export interface CoordinatorOptions {
  /** ms a claim holds before it lapses by itself (the holder died, or never finished). */
  readonly lease: number
  /** ms a waiter waits for the holder's entry before going to the origin itself. */
  readonly wait: number
  /** ms between a waiter's looks into L2. */
  readonly poll: number
}

/** Ends a claim: `reusable` when a fresh entry was stored for the others to take. Once only. */
export type Release = (reusable: boolean) => void

/** Either the entry, found while waiting, or the go-ahead to fetch it, with the lease to release. */
export type Claim<T> = { readonly found: T } | { readonly release: Release }

const NOTHING_TO_RELEASE: Claim<never> = Object.freeze({ release: () => {} })

export class Coordinator {
  readonly #redis: RedisLink
  readonly #options: CoordinatorOptions
  #closed = false
  /** Lease releases on their way (each bounded by the write timeout; none rejects). */
  readonly #releasing = new Set<Promise<void>>()
  /** The releases of the claims this process holds, until each is called. */
  readonly #held = new Set<Release>()
  /** Claims sent to Redis and not yet answered (each bounded by the read timeout). */
  readonly #claiming = new Set<Promise<unknown>>()

  constructor (redis: RedisLink, options: CoordinatorOptions) {
    this.#redis = redis
    this.#options = options
  }

  /** Claims `key`, or waits for `find` to see the entry another process is fetching. */
  async claim<T> (key: string, find: () => Promise<T | undefined>): Promise<Claim<T>> {
    const token = randomUUID()
    const deadline = Date.now() + this.#options.wait
    for (let attempt = 0; ; attempt++) {
      const claiming = this.#redis.claim(key, token, this.#options.lease)
      this.#claiming.add(claiming)
      const claimed = await claiming.finally(() => this.#claiming.delete(claiming))
      if (claimed === undefined || claimed === 'pass') return NOTHING_TO_RELEASE
      if (claimed === 'taken') {
        const release = this.#releaser(key, token)
        // Granted once the cache was closing: nothing will store the answer, and nobody else would end the lease.
        if (this.#closed) {
          release(false)
          return NOTHING_TO_RELEASE
        }
        // A holder may have stored the entry and let go between our last look and this claim.
        const found = attempt === 0 ? undefined : await find()
        if (found === undefined) return { release }
        release(true)
        return { found }
      }
      if (Date.now() >= deadline || this.#closed) return NOTHING_TO_RELEASE
      // Never past the deadline: a poll longer than the wait would make the wait the poll's.
      await sleep(Math.min(this.#options.poll, Math.max(0, deadline - Date.now())))
      const found = await find()
      if (found !== undefined) return { found }
    }
  }

  /** Waiters stop waiting and go to the origin. */
  close (): void {
    this.#closed = true
  }

  /**
   * Ends the claims still held, as unable to serve the others, once the cache is closing: their
   * answers, still to come, will not be stored, and the other processes would sit out the leases.
   */
  releaseHeld (): void {
    for (const release of [...this.#held]) release(false)
  }

  /**
   * Settles once the claims and releases on their way have: flush() waits for them, so that a
   * process that exits after it leaves no lease for the others to sit out.
   */
  async settled (): Promise<void> {
    while (this.#releasing.size > 0 || this.#claiming.size > 0) await Promise.allSettled([...this.#releasing, ...this.#claiming])
  }

  #releaser (key: string, token: string): Release {
    let released = false
    const release: Release = (reusable) => {
      if (released) return
      released = true
      this.#held.delete(release)
      const releasing = this.#redis.release(key, token, reusable, this.#options.lease)
      this.#releasing.add(releasing)
      void releasing.finally(() => this.#releasing.delete(releasing))
    }
    this.#held.add(release)
    return release
  }
}
