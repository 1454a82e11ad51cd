/**
 * The engine's writes to its store. Each runs in the background (no caller waits for one;
 * `flush()` and `close()` do), never rejects (a failure is a `store-error` event), and is ordered
 * against invalidations: a write for a request sent before an invalidation is not made where that
 * invalidation reaches, and an invalidation waits for the writes already on their way, so that
 * its deletes come after them (src/invalidation.ts).
 */
import type { CacheEntry, Variants } from './entry.js'
import type { CacheRequest } from './key.js'
import { InvalidationLog } from './invalidation.js'
import type { StaleDefaults } from './stored-policy.js'
import type { Reporter } from './status.js'
import type { Selector, Tiers } from './store/tiers.js'
import type { EntryStore, MaybePromise } from './store/types.js'
import { without } from './maps.js'
import { findVariant, removeVariant, sameVariant, writeVariant, type Replaces } from './variants.js'

/** A store write under way: the entry it stores, for a request sent when `since` invalidations had started. */
interface Landing {
  readonly entry: CacheEntry
  readonly since: number
  readonly done: Promise<unknown>
}

export class Writes {
  readonly #store: Tiers
  readonly #reporter: Reporter
  /** Work nobody awaits, kept until it ends so that `flush()` can wait for it. */
  readonly #pending = new Set<Promise<unknown>>()
  /** Store writes under way, which an invalidation lets land first. */
  readonly #writing = new Set<Promise<unknown>>()
  readonly #invalidations = new InvalidationLog()
  /**
   * The entries each key's store writes under way are storing, the newest first. With a second
   * tier, a write first reads the shared tier's variants, to store the entry beside them, and until
   * then the entry is in no tier: a request sent as soon as its answer was read went to the origin
   * again. Lookups take them first (Cache#read): every one, since a write of one variant may wait
   * for another's to land (Tiers.getSettled), and a request for that other found its stale entry.
   * Writes are not hurried instead, by putting the entry in memory before that read: an older
   * answer's write whose read is still on its way would then land after a newer one's, which found
   * the older in memory and needed no read.
   */
  #landing = new Map<string, readonly Landing[]>()

  constructor (store: Tiers, reporter: Reporter) {
    this.#store = store
    this.#reporter = reporter
    // Another process's invalidation (Redis pub/sub) counts as this one's would: the application
    // changed the resource there, and a response on its way here since before may be older. Stored
    // now, it would undo the invalidation in memory and in Redis, for every process, until it
    // expired. It has dropped what it picks from memory already; no write here waits for it.
    store.onInvalidatedElsewhere((selector) => this.#invalidations.record(selector)())
  }

  /**
   * What a lookup made now carries as its `since`: how many invalidations had started, short of
   * any still under way. What it reads may predate one under way, so that one counts as after it.
   */
  get since (): number {
    return this.#invalidations.floor(this.#invalidations.count)
  }

  /** How many invalidations have started, those under way included. */
  get started (): number {
    return this.#invalidations.count
  }

  /**
   * Whether an invalidation that started after a lookup's `since` picks an answer to be stored
   * under `key` with these tags: its write would not be made.
   */
  refuses (since: number, key: string, tags: readonly string[]): boolean {
    return this.#invalidations.coversTagged(this.#invalidations.floor(since), key, () => tags)
  }

  /** Whether an invalidation that started after the first `since` (a count of those started) may pick what `key` stores. */
  invalidatedSince (since: number, key: string): boolean {
    return this.#invalidations.covers(since, key, undefined)
  }

  /**
   * Whether variants a lookup read under `key` may predate an invalidation that picks them: one
   * under way when it began (its `since`), or started since. They are not served. An invalidation
   * drops them only once the store writes already on their way have landed, while the answer to
   * the unsafe request that started it has already reached its caller, whose next read must not
   * find them (RFC 9111 §4.4).
   */
  outdated (since: number, key: string, variants: Variants): boolean {
    return this.#invalidations.covers(since, key, variants)
  }

  /** Runs `work` in the background; its failure is an event, never an unhandled rejection. Work done already is over. */
  background (work: MaybePromise<unknown>): void {
    if (!(work instanceof Promise)) return
    const settled = work.catch((error: unknown) => this.#reporter.emit('store-error', { reason: 'background', error }))
    this.#pending.add(settled)
    void settled.finally(() => this.#pending.delete(settled))
  }

  /**
   * Stores an entry beside the other variants of its URL, for a request sent when `since`
   * invalidations had started; `false` when it was not written (refused, failed, timed out).
   * Synchronous where the store is: such a write is over before an invalidation could wait for it.
   */
  write (entry: CacheEntry, retention: number, defaults: StaleDefaults, since: number, replaces?: Replaces, superseded?: CacheEntry): MaybePromise<boolean> {
    let work
    try {
      // A write that may replace only what it updates reads what every process stored (RFC 9111
      // §4.3.4, below): another process may have stored a newer representation since this one's
      // memory last read the store.
      work = writeVariant(this.#storeSince(since, replaces !== undefined), entry, retention, defaults, replaces, superseded)
    } catch (error) {
      this.#reporter.emit('store-error', { key: entry.key, reason: 'set', error })
      return false
    }
    if (!(work instanceof Promise)) return work
    const { key } = entry
    const done = this.#attempt(key, work).then((written) => {
      const others = this.#landing.get(key)?.filter((other) => other !== landing) ?? []
      if (others.length > 0) this.#landing.set(key, others)
      else this.#landing = without(this.#landing, key)
      return written === true
    })
    const landing: Landing = { entry, since, done }
    // The newest write of each variant is the one a lookup takes: one a variant, however many
    // writes of a URL revalidated on every use a slow store has under way.
    this.#landing.set(key, [landing, ...(this.#landing.get(key) ?? []).filter((other) => !sameVariant(other.entry, entry))])
    return done
  }

  /**
   * The entry the newest store write under way for `key` that answers `request` is storing, if
   * any, and if no invalidation that started since its request went out picks it: that write will
   * not be made.
   */
  landing (key: string, request: CacheRequest): CacheEntry | undefined {
    if (this.#landing.size === 0) return undefined
    for (const landing of this.#landing.get(key) ?? []) {
      if (findVariant(landing.entry, request) === undefined) continue
      return this.#invalidations.covers(this.#invalidations.floor(landing.since), key, landing.entry) ? undefined : landing.entry
    }
    return undefined
  }

  /**
   * Removes a stored variant in the background (a new answer replaced it but may not be kept),
   * once a write of its key under way has landed: that write may be storing the very entry.
   */
  remove (entry: CacheEntry, defaults: StaleDefaults, since: number): void {
    const landing = this.#landing.get(entry.key)
    const removed = landing === undefined
      ? removeVariant(this.#storeSince(since), entry, defaults)
      : Promise.all(landing.map((write) => write.done)).then(() => removeVariant(this.#storeSince(since), entry, defaults))
    this.background(this.#attempt(entry.key, removed))
  }

  /**
   * Drops what `selector` picks from the store, after the writes already on their way; whether the
   * store was reached (Tiers.invalidate). flush() waits for it too, so that close() does not shut
   * the store, and the channel to the other processes, under it; its outcome is its caller's.
   */
  invalidate (selector: Selector): Promise<boolean> {
    const work = this.#invalidate(selector)
    const settled = work.then(() => {}, () => {})
    this.#pending.add(settled)
    void settled.finally(() => this.#pending.delete(settled))
    return work
  }

  async #invalidate (selector: Selector): Promise<boolean> {
    // From now on no write of a request sent before picks what this selects (#storeSince).
    const ended = this.#invalidations.record(selector)
    try {
      if (this.#writing.size > 0) await Promise.allSettled([...this.#writing])
      return await this.#store.invalidate(selector)
    } finally {
      ended()
    }
  }

  /** Waits until the work in the background has ended (each store call bounded by its timeout). */
  async flush (): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending])
  }

  /** A store write, kept in `#writing` while under way; a failure is an event and `undefined`. */
  async #attempt<T> (key: string, work: Promise<T>): Promise<T | undefined> {
    this.#writing.add(work)
    try {
      return await work
    } catch (error) {
      this.#reporter.emit('store-error', { key, reason: 'set', error })
      return undefined
    } finally {
      this.#writing.delete(work)
    }
  }

  /** The store, for the writes of a request sent when `since` invalidations had started (StoreSince). */
  #storeSince (since: number, shared = false): EntryStore {
    return new StoreSince(this.#store, this.#invalidations, since, shared)
  }
}

/**
 * The store as the writes of a request sent when some invalidations had started see it: a write
 * that an invalidation started since then picks is not made, nor one an invalidation under way at
 * the read or the write picks. That response, or the other variants read beside it, may predate
 * the invalidation, and storing them would undo it. One object, no closures: one is made for every
 * write.
 */
class StoreSince implements EntryStore {
  readonly #store: Tiers
  readonly #invalidations: InvalidationLog
  /** Reads what the shared tier holds, past memory's, once this process's writes have landed (Tiers.getSettled). */
  readonly #shared: boolean
  #floor: number

  constructor (store: Tiers, invalidations: InvalidationLog, since: number, shared: boolean) {
    this.#store = store
    this.#invalidations = invalidations
    this.#floor = since
    this.#shared = shared
  }

  get (key: string): MaybePromise<Variants | undefined> {
    this.#floor = this.#invalidations.floor(this.#floor)
    return this.#shared ? this.#store.getSettled(key) : this.#store.getWhole(key)
  }

  set (key: string, variants: Variants, ttl: number): MaybePromise<boolean> {
    return this.#invalidations.covers(this.#invalidations.floor(this.#floor), key, variants) ? false : this.#store.set(key, variants, ttl)
  }

  delete (key: string): MaybePromise<void> {
    return this.#store.delete(key)
  }

  /** Memory's copy, for a write that read the shared tier (`shared`): its own writes since that read are there. */
  local (key: string): Variants | undefined {
    return this.#shared ? this.#store.local(key) : undefined
  }
}
