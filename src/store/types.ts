/**
 * The engine's view of a store: the variants of a resource by primary key. The memory tier
 * answers synchronously, so that a hit in memory costs no promise; others answer with promises. A
 * store never throws or rejects: a failure is reported through `StoreEvents` and reads as a miss.
 */
import type { CacheEntry, Variants } from '../entry.js'

export type MaybePromise<T> = T | Promise<T>

export interface EntryStore {
  get (key: string): MaybePromise<Variants | undefined>
  /** Stores the variants for `ttl` ms; resolves once written, `false` when the write was given up. */
  set (key: string, variants: Variants, ttl: number): MaybePromise<boolean>
  delete (key: string): MaybePromise<void>
  /** What this process holds under `key` now, when it keeps a copy of its own (src/store/tiers.ts). */
  local? (key: string): Variants | undefined
  /**
   * The variants this process's own writes of `key` stored since the write reading this store
   * began, whole (src/writes.ts): a write whose read of the shared tier was on its way meanwhile
   * found them missing there.
   */
  ownSince? (key: string): Variants | undefined
  /** Whether a write of this process storing `entry` is under way, and not yet outrun by a newer one of its variant. */
  underWay? (entry: CacheEntry): boolean
}

/** What a store operation that failed was doing, as `reason` in the store-error event. */
export type StoreOperation = 'open' | 'get' | 'set' | 'delete' | 'clear' | 'scan' | 'index' | 'publish' | 'subscribe' | 'lease' |
  /** A failure a Keyv of the caller's reported only as an 'error' event. */
  'keyv'

export interface StoreEvents {
  /** A store call failed or timed out, or a stored value did not parse. */
  error (operation: StoreOperation, key: string | undefined, error: unknown): void
  /** The memory tier dropped a resource's variants to stay within its bounds. */
  evict (key: string, bytes: number): void
}
