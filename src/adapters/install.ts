/**
 * `install()` puts the cache under code that was not written for it: `globalThis.fetch` becomes a
 * cachedFetch, and undici's global dispatcher (what `undici.request`, `stream` and Node's own
 * fetch use when given no dispatcher) gets the cache interceptor, both on one cache. `uninstall()`
 * puts back exactly what was there: the same fetch function and the same dispatcher objects.
 *
 * Both go out through the global dispatcher the application had (a ProxyAgent, a MockAgent in its
 * tests, or undici's default Agent), as plain fetch does; and the installed fetch follows one the
 * application sets after install() (what `--import cachedfetch/register` leaves it to do), as
 * plain fetch would. `undici.request` then uses that one, without the cache.
 */
import { Dispatcher, getGlobalDispatcher, setGlobalDispatcher } from 'undici'
import { createCachedFetch, type CachedFetch, type CachedFetchOptions } from './fetch.js'
import { cacheInterceptor } from './interceptor.js'

/** Where undici (ours, and the one bundled with Node) keeps its global dispatcher, by API version. */
const DISPATCHER_SLOTS = [Symbol.for('undici.globalDispatcher.1'), Symbol.for('undici.globalDispatcher.2')]

interface Installed {
  readonly fetch: CachedFetch
  /** The global dispatcher before the first install: requests go out through it. */
  readonly base: Dispatcher
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
export function install (options?: CachedFetchOptions): CachedFetch {
  const previous = installed ?? {
    previousFetch: globalThis.fetch,
    previousDispatchers: DISPATCHER_SLOTS.map((slot) => (globalThis as Record<symbol, unknown>)[slot])
  }
  const base = installed?.base ?? getGlobalDispatcher()
  const current = new CurrentGlobal(base)
  const cachedFetch = createCachedFetch({ dispatcher: current, ...options })
  const own = base.compose(cacheInterceptor({ cache: cachedFetch.cache }))
  current.own = own
  setGlobalDispatcher(own)
  globalThis.fetch = cachedFetch
  // A cache installed before is done with: its writes land.
  if (installed !== undefined) void retire(installed)
  installed = { fetch: cachedFetch, base, previousFetch: previous.previousFetch, previousDispatchers: previous.previousDispatchers }
  return cachedFetch
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

/** The dispatchers are the application's (or undici's default): not ours to close. */
async function retire (done: Installed): Promise<void> {
  await done.fetch.cache.close()
}

/**
 * Where the installed fetch sends what the cache forwards: the global dispatcher as it is at each
 * request, as plain fetch reads it, unless it is still the one install() set, which has the cache
 * on it already: then the base under it.
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
    return (current === this.own ? this.#base : current).dispatch(opts, handler)
  }

  override async close (): Promise<void> {}
  override async destroy (): Promise<void> {}
}
