/**
 * The variants of one URL in a store (RFC 9111 §4.1): finding the one a request selects, and
 * replacing or removing one beside the others. Writes read the variants, change them and write
 * them back.
 */
import { isEntry, toVariants, variantList, type CacheEntry, type Variants } from './entry.js'
import { varyMatches, type CacheRequest } from './key.js'
import type { StaleDefaults } from './stored-policy.js'
import type { EntryStore, MaybePromise } from './store/types.js'

/** A URL with more variants than this is being fed Vary values without end; the oldest goes. */
const MAX_VARIANTS = 32
const NO_OTHERS: readonly CacheEntry[] = []

export function findVariant (variants: Variants | undefined, request: CacheRequest): CacheEntry | undefined {
  if (variants === undefined) return undefined
  if (isEntry(variants)) return varyMatches(variants.vary, request.headers) ? variants : undefined
  const kept = new Map<string, string | undefined>()
  for (const variant of variants) if (varyMatches(variant.vary, request.headers, kept)) return variant
  return undefined
}

/** An id for one variant of one resource: its key and the request values it was selected by. */
export function variantId (entry: CacheEntry): string {
  return `${entry.key}\n${JSON.stringify(entry.vary)}`
}

/**
 * What an update may replace: the stored variant of `entry`'s Vary values (the response revalidated),
 * and only if `selected` says the update is for it.
 */
export interface Replaces {
  readonly entry: CacheEntry
  readonly selected: (current: CacheEntry) => boolean
}

/**
 * `false` when the store gave the write up. Synchronous where the store is (memory only): a 304
 * writes on every use, and the promises of an asynchronous write were a tenth of what an
 * interceptor's 1 KB 304 allocated.
 */
export function writeVariant (store: EntryStore, entry: CacheEntry, retention: number, defaults: StaleDefaults, replaces?: Replaces, superseded?: CacheEntry): MaybePromise<boolean> {
  const current = store.get(entry.key)
  return current instanceof Promise
    ? current.then((found) => replaceVariant(store, found, entry, retention, defaults, replaces, superseded))
    : replaceVariant(store, current, entry, retention, defaults, replaces, superseded)
}

/**
 * `replaces`, for a 304's update (RFC 9111 §4.3.4): it updates the stored response it selects, as
 * the store holds it now. One dropped while the 304 was on its way, or replaced by a newer
 * representation, is updated by nothing: no write. `superseded`: the stored response a full answer
 * to the same request takes the place of. Either goes, though the new one varies otherwise (a Vary
 * it did not have), where it would still be chosen for the requests the new one does not match.
 */
function replaceVariant (store: EntryStore, read: Variants | undefined, entry: CacheEntry, retention: number, defaults: StaleDefaults, replaces?: Replaces, superseded?: CacheEntry): MaybePromise<boolean> {
  // What this process's other writes of the URL stored while this one's read was on its way, whole,
  // first: the read may predate them, and the list stored from it alone would drop what they stored.
  const own = store.ownSince?.(entry.key)
  const current = own === undefined || read === undefined || own === read ? own ?? read : withOthers(own, read)
  if (replaces !== undefined) {
    // A single variant as it is, not in a list: a 304 writes on every use.
    const old = current === undefined ? undefined : isEntry(current) ? (sameVariant(current, replaces.entry) ? current : undefined) : current.find((variant) => sameVariant(variant, replaces.entry))
    // Or what it revalidated is an entry a write of this process still has on its way (a lookup
    // took it from there, Cache#read): the store may not hold it yet, or only the version before.
    if ((old === undefined || !replaces.selected(old)) && store.underWay?.(replaces.entry) !== true) return false
  }
  const gone = superseded ?? replaces?.entry
  const replaced = (variant: CacheEntry): boolean => sameVariant(variant, entry) || (gone !== undefined && sameVariant(variant, gone))
  // A 304's write read the shared tier to find what it updates; the URL's other variants are
  // memory's first, where this process's own writes since that read are (another refresh's,
  // another caller's), then the shared tier's that memory does not have.
  const local = replaces === undefined ? undefined : store.local?.(entry.key)
  const pool = local === undefined || current === undefined || local === current ? current : withOthers(local, current)
  // Mostly a URL's one variant is replaced by a new answer to the same request: no lists to make.
  const others = pool === undefined || (isEntry(pool) && replaced(pool))
    ? NO_OTHERS
    : variantList(pool).filter((variant) => !replaced(variant))
  if (others.length === 0) return store.set(entry.key, entry, retention)
  return store.set(entry.key, [entry, ...others].slice(0, MAX_VARIANTS), Math.max(retention, ...others.map((v) => v.policy.retention(v.headers, defaults))))
}

export async function removeVariant (store: EntryStore, entry: CacheEntry, defaults: StaleDefaults): Promise<void> {
  const current = await store.get(entry.key)
  if (current === undefined) return
  const others = variantList(current).filter((variant) => !sameVariant(variant, entry))
  if (others.length === 0) await store.delete(entry.key)
  else await store.set(entry.key, toVariants(others), Math.max(...others.map((v) => v.policy.retention(v.headers, defaults))))
}

/** `first`'s variants, then those of `then` that none of `first` is the same variant as. */
function withOthers (first: Variants, then: Variants): Variants {
  const mine = variantList(first)
  const theirs = variantList(then).filter((variant) => !mine.some((own) => sameVariant(own, variant)))
  return theirs.length === 0 ? first : [...mine, ...theirs]
}

/** Whether two entries answer the same Vary values; counted rather than listed, as every write asks it. */
export function sameVariant (a: CacheEntry, b: CacheEntry): boolean {
  let unmatched = 0
  for (const _field in b.vary) unmatched++
  for (const field in a.vary) {
    if (a.vary[field] !== b.vary[field]) return false
    unmatched--
  }
  return unmatched === 0
}
