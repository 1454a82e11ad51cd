/**
 * Cross-process single-flight, the idempotency seeds' pattern: a process that misses claims the key
 * with a short lease in Redis (SET NX PX) and goes to the origin; another that misses the same key
 * meanwhile waits a bounded time for the entry to appear in L2, polling, then serves it. A holder
 * that dies leaves a lease that expires, and a waiter takes it over. Redis failing, or the wait
 * running out, sends the waiter to the origin: the coordinator saves origin requests, it never
 * costs one.
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

/** Either the entry, found while waiting, or the go-ahead to fetch it, with the lease to release. */
export type Claim<T> = { readonly found: T } | { readonly release: () => void }

const NOTHING_TO_RELEASE: Claim<never> = Object.freeze({ release: () => {} })

export class Coordinator {
  readonly #redis: RedisLink
  readonly #options: CoordinatorOptions

  constructor (redis: RedisLink, options: CoordinatorOptions) {
    this.#redis = redis
    this.#options = options
  }

  /** Claims `key`, or waits for `find` to see the entry another process is fetching. */
  async claim<T> (key: string, find: () => Promise<T | undefined>): Promise<Claim<T>> {
    const token = randomUUID()
    const deadline = Date.now() + this.#options.wait
    for (let attempt = 0; ; attempt++) {
      const claimed = await this.#redis.claim(key, token, this.#options.lease)
      if (claimed === undefined) return NOTHING_TO_RELEASE
      if (claimed) {
        const release = (): void => { void this.#redis.release(key, token) }
        // A holder may have stored the entry and let go between our last look and this claim.
        const found = attempt === 0 ? undefined : await find()
        if (found === undefined) return { release }
        release()
        return { found }
      }
      if (Date.now() >= deadline) return NOTHING_TO_RELEASE
      await sleep(this.#options.poll)
      const found = await find()
      if (found !== undefined) return { found }
    }
  }
}
