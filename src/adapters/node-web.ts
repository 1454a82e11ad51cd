/**
 * Node's own fetch classes (its bundled undici's), as they were when cachedfetch was loaded. An
 * application may put others in their place (undici's `install()` does): objects made from Node's
 * before then are still told apart from the `undici` package's by these.
 */
export const NodeRequest = globalThis.Request
export const NodeHeaders = globalThis.Headers
export const NodeFormData = globalThis.FormData
export const NodeResponse = globalThis.Response
