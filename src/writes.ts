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
import { findVariant, removeVariant, sameVariant, variantId, writeVariant, type Replaces } from './variants.js'

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
  /**
   * While writes of a key are under way: the whole list the newest store write of it stored, when
   * (a #tick), and by variant the tick at which the latest-begun write that stored it began. A
   * write whose read of the shared tier was on its way before that store found the tier without
   * it, and would store the list it read with its one variant changed, dropping what the other
   * stored (a variant, or its newer version) from memory and from the tier. Two such reads are
   * under way at once whenever memory holds only some of the URL's variants, or for two 304s: the
   * write each waits for (Tiers.getSettled) is one already storing, not one still reading. Nor is
   * a write of a variant made once a write of it that began later has stored it: reads that land
   * out of order would put the older back. A 304's update (`updates`) is no newer representation:
   * it puts back no answer that began before it, only an older update (RFC 9111 §4.3.4). Kept only
   * while some write of the key is under way: one that begins later reads a store that has what
   * they stored.
   */
  readonly #stored = new Map<string, { variants: Variants, at: number, readonly answers: Map<string, number>, readonly updates: Map<string, number> }>()
  /** Counts write starts and store writes: their order (#stored). */
  #ticks = 0
  /** How many writes of each key are under way: #landing keeps only the newest of a variant's. */
  readonly #underWay = new Map<string, number>()
  /** The entries of the writes under way, and when each began (underWay()). */
  readonly #began = new WeakMap<CacheEntry, number>()

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
    // A write that may replace only what it updates reads what every process stored (RFC 9111
    // §4.3.4, below): another process may have stored a newer representation since this one's
    // memory last read the store.
    const store = this.#storeSince(since, replaces !== undefined, entry)
    try {
      work = writeVariant(store, entry, retention, defaults, replaces, superseded)
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
      this.#began.delete(entry)
      const underWay = this.#underWay.get(key)! - 1
      if (underWay > 0) this.#underWay.set(key, underWay)
      else {
        this.#underWay.delete(key)
        this.#stored.delete(key)
      }
      return written === true
    })
    const landing: Landing = { entry, since, done }
    // The newest write of each variant is the one a lookup takes: one a variant, however many
    // writes of a URL revalidated on every use a slow store has under way.
    this.#landing.set(key, [landing, ...(this.#landing.get(key) ?? []).filter((other) => !sameVariant(other.entry, entry))])
    this.#underWay.set(key, (this.#underWay.get(key) ?? 0) + 1)
    this.#began.set(entry, store.begun)
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
  #storeSince (since: number, shared = false, entry?: CacheEntry): StoreSince {
    return new StoreSince(this, this.#store, this.#invalidations, since, shared, entry)
  }

  /** A write begins: its place among the others' starts and stores (#stored). */
  begin (): number {
    return ++this.#ticks
  }

  /**
   * Whether the write of `entry` that began at `begun` may store `variants` under `key` (StoreSince.set):
   * not once a write of the same variant that began later has stored it, unless that one is a 304's
   * update (`update`) and this one is not. Notes it for the writes of the key under way (#stored) if it may.
   */
  storing (key: string, variants: Variants, entry: CacheEntry | undefined, begun: number, update: boolean): boolean {
    const at = ++this.#ticks
    // No other write of the key under way (memory alone, mostly): nothing to note.
    if (!this.#underWay.has(key)) return true
    const id = entry === undefined ? undefined : variantId(entry)
    let stored = this.#stored.get(key)
    if (id !== undefined && stored !== undefined &&
        ((stored.answers.get(id) ?? 0) > begun || (update && (stored.updates.get(id) ?? 0) > begun))) return false
    if (stored === undefined) this.#stored.set(key, stored = { variants, at, answers: new Map(), updates: new Map() })
    else {
      stored.variants = variants
      stored.at = at
    }
    if (id !== undefined) (update ? stored.updates : stored.answers).set(id, begun)
    return true
  }

  /**
   * Whether a write storing `entry` is under way, and no write of its variant that began later
   * has stored (that one's store would be refused, storing()).
   */
  underWay (entry: CacheEntry): boolean {
    const began = this.#began.get(entry)
    if (began === undefined) return false
    const stored = this.#stored.get(entry.key)
    const id = variantId(entry)
    return stored === undefined || Math.max(stored.answers.get(id) ?? 0, stored.updates.get(id) ?? 0) <= began
  }

  /** The list the newest write of `key` stored, if it did so after `begun` (a tick) and writes of it are still under way. */
  storedSince (key: string, begun: number): Variants | undefined {
    const stored = this.#stored.get(key)
    return stored !== undefined && stored.at > begun ? stored.variants : undefined
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
  readonly #writes: Writes
  /** When this write began, a tick of Writes': what the others stored since (Writes.storedSince). */
  readonly #begun: number
  /** The entry this write stores, if it stores one (not a removal). */
  readonly #entry: CacheEntry | undefined
  readonly #store: Tiers
  readonly #invalidations: InvalidationLog
  /** Reads what the shared tier holds, past memory's, once this process's writes have landed (Tiers.getSettled). */
  readonly #shared: boolean
  #floor: number

  constructor (writes: Writes, store: Tiers, invalidations: InvalidationLog, since: number, shared: boolean, entry: CacheEntry | undefined) {
    this.#writes = writes
    this.#begun = writes.begin()
    this.#entry = entry
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
    if (this.#invalidations.covers(this.#invalidations.floor(this.#floor), key, variants)) return false
    // A write that reads the shared tier to find what it updates is a 304's (Writes.write).
    if (!this.#writes.storing(key, variants, this.#entry, this.#begun, this.#shared)) return false
    return this.#store.set(key, variants, ttl)
  }

  delete (key: string): MaybePromise<void> {
    return this.#store.delete(key)
  }

  /** Memory's copy, for a write that read the shared tier (`shared`): its own writes since that read are there. */
  local (key: string): Variants | undefined {
    return this.#shared ? this.#store.local(key) : undefined
  }

  /** When this write began (Writes.begin). */
  get begun (): number {
    return this.#begun
  }

  /** Whether a write of this process storing `entry` is under way (Writes.underWay). */
  underWay (entry: CacheEntry): boolean {
    return this.#writes.underWay(entry)
  }

  /** What this process's other writes of `key` stored since this one began (Writes.storedSince). */
  ownSince (key: string): Variants | undefined {
    return this.#writes.storedSince(key, this.#begun)
  }
}
