/**
 * The soak's origins: loopback HTTP servers whose resources carry a version, raised when the soak
 * invalidates them, and whose bodies are a pure function of URL, language and version, which the
 * body's first line names: any body a caller receives can be checked byte for byte against what
 * the origin sent for that URL and version, with no table of everything sent. They
 * answer after a random delay and fail a share of requests: a 503 naming the exchange, a reset
 * before the response, or a reset half way through the body. Failures are logged by resource (the
 * 503s here, the resets as the client sees them, test/soak/soak.ts), so that a caller's failure
 * can be matched with the origin's. Nothing here grows with the number of requests: the log keeps
 * the last 30 s, and one body per resource and language is kept made.
 */
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** How a resource is cached: what its Cache-Control says, and whether it varies or is too large to store. */
export type Kind = 'fresh' | 'swr' | 'sie' | 'no-cache' | 'no-store' | 'vary' | 'large'

const KINDS: readonly Kind[] = ['fresh', 'fresh', 'swr', 'sie', 'sie', 'no-cache', 'no-store', 'vary', 'vary', 'large']

const CACHE_CONTROL: Record<Kind, string> = {
  fresh: 'max-age=2',
  swr: 'max-age=1, stale-while-revalidate=2',
  sie: 'max-age=1, stale-if-error=60',
  'no-cache': 'no-cache',
  'no-store': 'no-store',
  vary: 'max-age=2',
  large: 'max-age=2'
}

/** The languages a varying resource is asked in. */
export const LANGUAGES = ['en', 'fr'] as const

export interface Resource {
  readonly url: string
  readonly kind: Kind
  /** Its Cache-Tag; also the first segment of its path, so a prefix picks the same resources on one origin. */
  readonly tag: string
  /** The version the origin serves now. */
  version: number
  /**
   * The oldest version a request that starts now may receive: raised to the new version once an
   * invalidation that raised it has completed.
   */
  floor: number
}

/** A failure the origin made on purpose. */
export interface Failure {
  readonly kind: '503' | 'reset'
  /** The exchange's number, which a 503 names in its body; 0 for a reset. */
  readonly id: number
  /** performance.now() when the 503 was sent, or the client saw the connection fail. */
  readonly at: number
}

export interface OriginCounts {
  ok: number
  notModified: number
  failed503: number
  resets: number
  resetsMidBody: number
}

/** How long failures are kept: longer than any request of the soak may take. */
const FAILURE_MEMORY_MS = 30_000

export class SoakOrigins {
  readonly resources: Resource[] = []
  readonly counts: OriginCounts = { ok: 0, notModified: 0, failed503: 0, resets: 0, resetsMidBody: 0 }
  readonly #byPath = new Map<string, Resource>()
  /** The body of each resource's current version, made once. */
  readonly #bodies = new Map<string, { readonly version: number, readonly body: Buffer }>()
  readonly #failures = new Map<string, Failure[]>()
  readonly #servers: Server[] = []
  readonly #random: () => number
  readonly #failureRate: number
  readonly #maxLatency: number
  readonly #largeSize: number
  #exchanges = 0

  private constructor (random: () => number, failureRate: number, maxLatency: number, largeSize: number) {
    this.#random = random
    this.#failureRate = failureRate
    this.#maxLatency = maxLatency
    this.#largeSize = largeSize
  }

  /** `origins` servers of `perOrigin` resources each; `largeSize` is the size of a `large` body. */
  static async start (options: { origins: number, perOrigin: number, random: () => number, failureRate: number, maxLatency: number, largeSize: number }): Promise<SoakOrigins> {
    const soak = new SoakOrigins(options.random, options.failureRate, options.maxLatency, options.largeSize)
    for (let o = 0; o < options.origins; o++) {
      const server = createServer((req, res) => { void soak.#answer(base, req, res) })
      server.keepAliveTimeout = 5000
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      soak.#servers.push(server)
      for (let i = 0; i < options.perOrigin; i++) {
        const tag = `g${i % 5}`
        const resource: Resource = { url: `${base}/${tag}/r${i}`, kind: KINDS[i % KINDS.length]!, tag, version: 1, floor: 1 }
        soak.resources.push(resource)
        soak.#byPath.set(`${base}/${tag}/r${i}`, resource)
      }
    }
    return soak
  }

  /**
   * What a body says it is (its first line: URL, language, version), if the origin made it: the
   * body of that version is made again and compared byte for byte. `undefined` for anything else.
   */
  identify (body: Buffer): { readonly key: string, readonly version: number } | undefined {
    const head = /^(\S+) (\S+) v(\d+)\n/.exec(body.subarray(0, 512).toString('latin1'))
    const resource = head === null ? undefined : this.#byPath.get(head[1]!)
    if (head === null || resource === undefined) return undefined
    const [, , language, version] = head
    const key = `${resource.url} ${language!}`
    return body.equals(this.#body(resource, language!, Number(version), key)) ? { key, version: Number(version) } : undefined
  }

  /** The failures the origin made for `key` between `from` and `to` (performance.now()). */
  failuresBetween (key: string, from: number, to: number): Failure[] {
    return (this.#failures.get(key) ?? []).filter((f) => f.at >= from && f.at <= to)
  }

  /** The client saw an exchange for `key` fail on its connection. */
  reset (key: string): void {
    this.#fail(key, 'reset', 0)
  }

  /** `<url> <language>` of a request, as the failures are logged by. */
  keyOf (url: string, language: string | undefined): string | undefined {
    const resource = this.#byPath.get(url)
    return resource === undefined ? undefined : `${resource.url} ${resource.kind === 'vary' ? language ?? 'none' : '-'}`
  }

  /** The ETag of a version in a language: weak, so that no retry resumes a body with Range. */
  static etag (version: number, language: string): string {
    return `W/"v${version}-${language}"`
  }

  async close (): Promise<void> {
    await Promise.all(this.#servers.map((server) => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })))
  }

  async #answer (base: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const id = ++this.#exchanges
    const resource = this.#byPath.get(base + (req.url ?? ''))
    if (resource === undefined) {
      res.writeHead(404).end()
      return
    }
    const language = resource.kind === 'vary' ? String(req.headers['accept-language'] ?? 'none') : '-'
    const key = `${resource.url} ${language}`
    await sleep(Math.floor(this.#random() * this.#maxLatency))
    const version = resource.version
    const etag = SoakOrigins.etag(version, language)
    const roll = this.#random() / this.#failureRate
    if (roll < 1 / 3) {
      this.#fail(key, '503', id)
      this.counts.failed503++
      res.writeHead(503, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end(`down ${id}`)
      return
    }
    if (roll < 2 / 3) {
      this.counts.resets++
      req.socket.destroy()
      return
    }
    const headers: Record<string, string> = { 'cache-control': CACHE_CONTROL[resource.kind], etag, 'cache-tag': resource.tag }
    if (resource.kind === 'vary') headers.vary = 'accept-language'
    if (req.headers['if-none-match'] === etag && roll >= 1) {
      this.counts.notModified++
      res.writeHead(304, headers).end()
      return
    }
    const body = this.#body(resource, language, version, key)
    res.writeHead(200, { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(body.byteLength) })
    if (roll < 1) {
      this.counts.resetsMidBody++
      res.write(body.subarray(0, body.byteLength >> 1), () => req.socket.destroy())
      return
    }
    this.counts.ok++
    res.end(body)
  }

  /** The body of one version: its URL, language and version, then bytes that follow from them. */
  #body (resource: Resource, language: string, version: number, key: string): Buffer {
    const made = this.#bodies.get(key)
    if (made?.version === version) return made.body
    const head = `${resource.url} ${language} v${version}\n`
    const seed = createHash('sha256').update(head).digest().readUInt32BE(0)
    const length = resource.kind === 'large' ? this.#largeSize + (seed % 1024) : 100 + (seed % 6000)
    const body = Buffer.alloc(length)
    const written = body.write(head)
    // Every other resource is binary, so that the store's text and base64 framings both serve.
    const binary = seed % 2 === 0
    for (let i = written; i < length; i++) body[i] = binary ? (i * 31 + seed) & 0xff : 32 + ((i * 7 + seed) % 95)
    if (version === resource.version) this.#bodies.set(key, { version, body })
    return body
  }

  #fail (key: string, kind: Failure['kind'], id: number): void {
    const at = performance.now()
    const kept = (this.#failures.get(key) ?? []).filter((f) => f.at > at - FAILURE_MEMORY_MS)
    kept.push({ kind, id, at })
    this.#failures.set(key, kept)
  }
}
