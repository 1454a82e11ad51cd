/**
 * Reading a response as bytes through either adapter, for the store suites that check a binary
 * body survives a store byte for byte: the shared clients (clients.ts) read text, which would turn
 * bytes 128-255 into replacement characters.
 */
import { request, type Agent } from 'undici'
import { cacheInterceptor, createCachedFetch, type Cache } from '../../src/index.js'
import type { Adapter } from './clients.js'

/** Every byte value once. */
export const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i))

export interface BinaryReply {
  readonly body: Buffer
  /** Fields by lower-case name, a repeated field's lines joined with ", ". */
  readonly headers: Record<string, string>
}

/** A GET through `adapter`'s face of `cache`, on `agent`. */
export async function getBytes (adapter: Adapter['name'], cache: Cache, url: string, agent: Agent): Promise<BinaryReply> {
  const headers: Record<string, string> = {}
  if (adapter === 'cachedFetch') {
    const response = await createCachedFetch({ cache, dispatcher: agent })(url)
    response.headers.forEach((value, name) => { headers[name] = value })
    return { body: Buffer.from(await response.arrayBuffer()), headers }
  }
  const response = await request(url, { dispatcher: agent.compose(cacheInterceptor({ cache })) })
  for (const [name, value] of Object.entries(response.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return { body: Buffer.from(await response.body.arrayBuffer()), headers }
}

/** Header fields that are the connection's or the cache's own, not the stored response's. */
const NOT_STORED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'age', 'cache-status'])

/** The fields a store kept: those of a reply without the connection's and the cache's own. */
export function storedFields (headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !NOT_STORED.has(name)))
}
