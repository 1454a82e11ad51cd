/**
 * The engine's view of a store: variant sets by primary key. The memory store answers
 * synchronously, so that a hit in memory costs no promise; others answer with promises. A store
 * never throws or rejects: a failure is reported through `StoreEvents` and reads as a miss.
 */
import type { VariantSet } from '../entry.js'

export type MaybePromise<T> = T | Promise<T>

export interface EntryStore {
  get (key: string): MaybePromise<VariantSet | undefined>
  /** Stores the set for `ttl` ms; resolves once written (or the write was given up). */
  set (set: VariantSet, ttl: number): MaybePromise<void>
  delete (key: string): MaybePromise<void>
  clear (): MaybePromise<void>
}

export interface StoreEvents {
  /** A read or write failed or timed out, or a stored value did not parse. */
  error (operation: 'get' | 'set' | 'delete' | 'clear', key: string | undefined, error: unknown): void
  /** The store dropped a set to stay within its bounds. */
  evict (key: string, bytes: number): void
}
