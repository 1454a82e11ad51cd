/**
 * `install()` puts the cache under code that was not written for it: `globalThis.fetch` becomes a
 * cachedFetch, and undici's global dispatcher (what `undici.request`, `stream` and Node's own
 * fetch use when given no dispatcher) gets the cache interceptor, both on one cache. `uninstall()`
 * puts back exactly what was there: the same fetch function and the same dispatcher objects.
 *
 * Both go out through the global dispatcher the application had (a ProxyAgent, a MockAgent in its
 * tests, or undici's default Agent), as plain fetch does; and the installed fetch follows one the
 * application sets after install() (what `--import cachedfetch/register` leaves it to do), as
 * plain fetch would. `undici.request` then uses that one, without the cache, unless it was composed
 * over the installed one. A request goes through one installed cache layer at most: each marks what
 * it sends on, and passes by what comes marked (the installed fetch's, which its own cache looked
 * up; one a layer further out sent), as a layer of a cache installed before (retired) passes by all.
 */
import { Agent, Dispatcher, getGlobalDispatcher, setGlobalDispatcher } from 'undici'
import type { Cache } from '../cache.js'
import { extend } from '../objects.js'
import { describe, isOptionsObject } from '../validate.js'
import { createCachedFetch, type CachedFetch } from './fetch.js'
import type { CacheOrOptions } from './cache-from.js'
import { cacheInterceptor } from './interceptor.js'

/** Where undici (ours, and the one bundled with Node) keeps its global dispatcher, by API version. */
const DISPATCHER_SLOTS = [Symbol.for('undici.globalDispatcher.1'), Symbol.for('undici.globalDispatcher.2')]

/** On the dispatch options of a request an installed cache layer has seen: undici's interceptors copy it on. */
const PASSED = Symbol('cachedfetch.installed.passed')

interface Installed {
  readonly fetch: CachedFetch
  /** The global dispatcher install() found: requests go out through it. */
  readonly base: Dispatcher
  /** The global dispatcher install() set: the cache over `base`. */
  readonly own: Dispatcher
  /** The cache is install()'s own, to close; one the caller gave is the caller's. */
  readonly ownsCache: boolean
  /** What was there before: restored by uninstall(). */
  readonly previousFetch: typeof globalThis.fetch
  readonly previousDispatchers: readonly unknown[]
}

let installed: Installed | undefined

/**
 * Installs a cache for the whole process and returns its fetch (whose `.cache` is the engine, for
 * stats and invalidation). Installing again replaces the cache; uninstall() still restores what
 * was there before the first install.
 */
export function install (options?: CacheOrOptions): CachedFetch {
  if (options !== undefined && !isOptionsObject(options)) throw new TypeError(`expected options to be an object, got ${describe(options)}`)
  // fetch and undici.request go out the same way, through the global dispatcher: one of the caller's would split them.
  // Refused by the types too, but a JavaScript caller may give one.
  if ((options as { dispatcher?: unknown } | undefined)?.dispatcher !== undefined) throw new TypeError('install() sends through the global dispatcher: set yours with setGlobalDispatcher() before install(), not as options.dispatcher')
  const previous = installed ?? {
    previousFetch: globalThis.fetch,
    previousDispatchers: DISPATCHER_SLOTS.map((slot) => (globalThis as Record<symbol, unknown>)[slot])
  }
  // Installed again: on the same base, unless the application set a dispatcher since, which plain fetch would follow.
  const global = getGlobalDispatcher()
  const base = installed !== undefined && global === installed.own ? installed.base : composable(global)
  const current = new CurrentGlobal(base)
  const cachedFetch = createCachedFetch({ ...options, dispatcher: current })
  const own = base.compose(installedLayer(cachedFetch.cache))
  current.own = own
  setGlobalDispatcher(own)
  globalThis.fetch = cachedFetch
  // A cache installed before is done with: its writes land.
  if (installed !== undefined) void retire(installed, cachedFetch.cache)
  installed = {
    fetch: cachedFetch,
    base,
    own,
    // Given back the cache an install() made, it still is install()'s to close.
    ownsCache: options?.cache === undefined || (installed?.ownsCache === true && options.cache === installed.fetch.cache),
    previousFetch: previous.previousFetch,
    previousDispatchers: previous.previousDispatchers
  }
  return cachedFetch
}

/**
 * The cache interceptor as install() composes it on the global dispatcher: it passes by a request
 * another installed layer has seen (PASSED), and every request once the cache is no longer the
 * installed one; what it sends on is marked.
 */
function installedLayer (cache: Cache): Dispatcher.DispatcherComposeInterceptor {
  const interceptor = cacheInterceptor({ cache })
  return (dispatch) => {
    const marked: Dispatcher['dispatch'] = (opts, handler) => dispatch(extend(opts, { [PASSED]: true }), handler)
    const cached = interceptor(marked)
    return (opts, handler) => (opts as { [PASSED]?: true })[PASSED] === true || installed?.fetch.cache !== cache
      ? marked(opts, handler)
      : cached(opts, handler)
  }
}

/** Agents of this undici standing in for an older undici's (composable()), one each. */
const standIns = new WeakMap<Dispatcher, Dispatcher>()

/**
 * The global dispatcher, as one the cache can be composed on. undici 7 sets both slots; an older
 * undici only the first: Node 20's own, once its fetch has run before this undici was loaded (a
 * preload that fetches), takes no handler of the API the cache speaks, and every request failed.
 * An Agent of an older undici gives way to one of this undici's with the defaults (Node's own is
 * one with the defaults; options of another's, its timeouts or TLS settings, are not carried
 * over); anything else of an older undici (its ProxyAgent) cannot give way without losing what it
 * does, and is refused.
 */
function composable (global: Dispatcher): Dispatcher {
  const slots = globalThis as Record<symbol, unknown>
  if (slots[DISPATCHER_SLOTS[1]!] === global) return global
  if (global.constructor.name === 'Agent') {
    let standIn = standIns.get(global)
    if (standIn === undefined) standIns.set(global, standIn = new Agent())
    return standIn
  }
  throw new TypeError(`the global dispatcher (a ${global.constructor.name}) is from an undici older than 7, which takes no handler of the API the cache uses: set one with undici 7's setGlobalDispatcher()`)
}

/** Puts back the fetch and global dispatcher that were there before install(); the cache is closed. */
export async function uninstall (): Promise<void> {
  const current = installed
  if (current === undefined) return
  installed = undefined
  globalThis.fetch = current.previousFetch
  DISPATCHER_SLOTS.forEach((slot, i) => { (globalThis as Record<symbol, unknown>)[slot] = current.previousDispatchers[i] })
  await retire(current)
}

/**
 * The dispatchers are the application's (or undici's default): not ours to close; nor is a cache
 * the caller gave, which may be the one installed next.
 */
async function retire (done: Installed, next?: unknown): Promise<void> {
  if (done.ownsCache && done.fetch.cache !== next) await done.fetch.cache.close()
}

/**
 * Where the installed fetch sends what the cache forwards: the global dispatcher as it is at each
 * request, as plain fetch reads it (one of an older undici as composable() takes it), unless it is
 * still the one install() set, which has the cache on it already: then the base under it. What it
 * sends is marked, so that an installed layer under a dispatcher composed over install()'s passes
 * it by: the installed fetch's own cache has looked it up.
 */
class CurrentGlobal extends Dispatcher {
  own: Dispatcher | undefined
  readonly #base: Dispatcher

  constructor (base: Dispatcher) {
    super()
    this.#base = base
  }

  override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const current = getGlobalDispatcher()
    // Marked either way: the base may be a dispatcher composed over an install() before with the same cache.
    return (current === this.own ? this.#base : composable(current)).dispatch(extend(opts, { [PASSED]: true }), handler)
  }

  override async close (): Promise<void> {}
  override async destroy (): Promise<void> {}
}
