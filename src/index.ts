/**
 * cachedfetch: an RFC 9111 HTTP cache for Node.js. One engine (`createCache`) and two faces on it:
 * a drop-in `fetch` (`createCachedFetch`, `cachedFetch`) and an undici interceptor
 * (`cacheInterceptor`).
 */
export { Cache, createCache } from './cache.js'
export type { CacheStats, FetchCacheMode } from './cache.js'
export type { ExplainedRequest, Explanation, HeaderFields } from './explain.js'
export type { CacheOrOptions } from './adapters/cache-from.js'
export { cachedFetch, createCachedFetch } from './adapters/fetch.js'
export type { CachedFetch, CachedFetchOptions, FetchInit, FetchInput } from './adapters/fetch.js'
export { cacheInterceptor } from './adapters/interceptor.js'
export { install, uninstall } from './adapters/install.js'
export type { CacheDispatchOptions, CacheInterceptorOptions } from './adapters/interceptor.js'
export { DEFAULTS } from './options.js'
export type { CacheOptions, CacheableMethod, HostPolicy, RequestPolicy } from './options.js'
export { RETRY_DEFAULTS } from './retry.js'
export type { RetryOptions } from './retry.js'
export { CachedFetchError, isCachedFetchError } from './errors.js'
export type { CachedFetchErrorCode } from './errors.js'
export { CACHE_NAME, EVENTS } from './status.js'
export type { CacheEvent, EventName, StatsSnapshot } from './status.js'
