/**
 * Any Keyv backend as a store. Values are variant sets in their versioned serialized form
 * (src/entry.ts); a value that does not parse is a miss, deleted and reported. Every call has a
 * timeout, and every failure is a miss or a skipped write plus an event: a broken store never
 * fails a request (shared/DESIGN.md).
 */
import { Keyv, type KeyvStoreAdapter } from 'keyv'
import { deserializeVariantSet, serializeVariantSet, type VariantSet } from '../entry.js'
import type { PolicyFactory } from '../policy.js'
import { describe } from '../validate.js'
import type { EntryStore, StoreEvents } from './types.js'

export interface KeyvStoreOptions {
  /** ms a read may take before it counts as a miss. */
  readonly readTimeout: number
  /** ms a write or delete may take before it is given up. */
  readonly writeTimeout: number
}

export const KEYV_STORE_DEFAULTS: KeyvStoreOptions = Object.freeze({ readTimeout: 100, writeTimeout: 1000 })

export class StoreTimeoutError extends Error {
  override readonly name = 'StoreTimeoutError'
}

export class KeyvStore implements EntryStore {
  readonly #keyv: Keyv
  readonly #policies: PolicyFactory
  readonly #events: StoreEvents
  readonly #options: KeyvStoreOptions

  constructor (keyv: Keyv, policies: PolicyFactory, events: StoreEvents, options: KeyvStoreOptions = KEYV_STORE_DEFAULTS) {
    this.#keyv = keyv
    this.#policies = policies
    this.#events = events
    this.#options = options
    // Keyv reports some failures only as 'error' events; one listener for the store's lifetime.
    keyv.on('error', (error: unknown) => events.error('get', undefined, error))
  }

  async get (key: string): Promise<VariantSet | undefined> {
    let value: unknown
    try {
      value = await withTimeout(this.#keyv.get(key), this.#options.readTimeout)
    } catch (error) {
      this.#events.error('get', key, error)
      return undefined
    }
    if (value === undefined || value === null) return undefined
    const set = deserializeVariantSet(value, key, this.#policies)
    if (set === undefined) {
      this.#events.error('get', key, new TypeError(`stored value under ${JSON.stringify(key)} is not a cachedfetch entry`))
      await this.delete(key)
    }
    return set
  }

  async set (set: VariantSet, ttl: number): Promise<void> {
    await this.#attempt('set', set.key, () => this.#keyv.set(set.key, serializeVariantSet(set), ttl))
  }

  async delete (key: string): Promise<void> {
    await this.#attempt('delete', key, () => this.#keyv.delete(key))
  }

  async clear (): Promise<void> {
    await this.#attempt('clear', undefined, () => this.#keyv.clear())
  }

  async #attempt (operation: 'set' | 'delete' | 'clear', key: string | undefined, call: () => Promise<unknown>): Promise<void> {
    try {
      await withTimeout(call(), this.#options.writeTimeout)
    } catch (error) {
      this.#events.error(operation, key, error)
    }
  }
}

function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new StoreTimeoutError(`store call took longer than ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** A Keyv instance is used as it is; a bare Keyv store adapter (or a Map) is wrapped in one. */
export function toKeyv (value: unknown, path: string): Keyv | undefined {
  if (value === undefined) return undefined
  if (value instanceof Keyv) return value
  if (isStoreLike(value)) {
    // A Keyv from another copy of the package is a store-like object too; Keyv accepts it.
    return new Keyv({ store: value as KeyvStoreAdapter })
  }
  throw new TypeError(`expected ${path} to be a Keyv instance or a Keyv store adapter, got ${describe(value)}`)
}

function isStoreLike (value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false
  const store = value as Record<string, unknown>
  return typeof store.get === 'function' && typeof store.set === 'function' &&
    typeof store.delete === 'function' && typeof store.clear === 'function'
}
