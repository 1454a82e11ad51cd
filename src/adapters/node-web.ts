/**
 * Node's own fetch classes (its bundled undici's), as they were when cachedfetch was loaded.
 * `install()` puts the `undici` package's in their place, so that what the installed fetch returns
 * is a `Response` to code that checks; objects made from Node's before then are still told apart
 * from undici's by these.
 */
export const NodeRequest = globalThis.Request
export const NodeHeaders = globalThis.Headers
export const NodeFormData = globalThis.FormData
export const NodeResponse = globalThis.Response
