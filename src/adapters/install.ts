/**
 * `install()` puts the cache under code that was not written for it: `globalThis.fetch` becomes a
 * cachedFetch, and undici's global dispatcher (what `undici.request`, `stream` and Node's own
 * fetch use when given no dispatcher) gets the cache interceptor, both on one cache. `uninstall()`
 * puts back exactly what was there: the same fetch function and the same dispatcher objects.
 */
import { Agent, setGlobalDispatcher } from 'undici'
import { createCachedFetch, type CachedFetch, type CachedFetchOptions } from './fetch.js'
import { cacheInterceptor } from './interceptor.js'

/** Where undici (ours, and the one bundled with Node) keeps its global dispatcher, by API version. */
const DISPATCHER_SLOTS = [Symbol.for('undici.globalDispatcher.1'), Symbol.for('undici.globalDispatcher.2')]

interface Installed {
  readonly fetch: CachedFetch
  /** The agent the global dispatcher goes out through. */
  readonly agent: Agent
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
  const cachedFetch = createCachedFetch(options)
  const previous = installed ?? {
    previousFetch: globalThis.fetch,
    previousDispatchers: DISPATCHER_SLOTS.map((slot) => (globalThis as Record<symbol, unknown>)[slot])
  }
  // Requests through the global dispatcher go out through a base of their own, as cachedFetch's do.
  const agent = new Agent()
  setGlobalDispatcher(agent.compose(cacheInterceptor({ cache: cachedFetch.cache })))
  globalThis.fetch = cachedFetch
  // A cache installed before is done with: its writes land, its connections close.
  if (installed !== undefined) void retire(installed)
  installed = { fetch: cachedFetch, agent, previousFetch: previous.previousFetch, previousDispatchers: previous.previousDispatchers }
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

async function retire (done: Installed): Promise<void> {
  await done.fetch.cache.close()
  await done.agent.close()
}
