/**
 * Per-host policy: `hosts: { 'api.example.com': {…}, '*.example.com': {…}, 'localhost:8080': {…} }`.
 * The most specific pattern wins: an exact host and port, then an exact host, then the longest
 * wildcard (`*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`), then
 * the cache's own options. Each entry is applied over those options once, at construction.
 */
import { memoize } from './memo.js'
import { applyOwnPolicy, HOST_POLICY_KEYS, type HostPolicy, type RequestSettings } from './settings.js'
import { describe } from './validate.js'

/** A host name, optionally with a port, or a leading `*.` wildcard: lower case, as URLs have it. */
const PATTERN = /^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$/
const DEFAULT_PORTS: Readonly<Record<string, string>> = { 'http:': '80', 'https:': '443' }

export class HostTable {
  readonly #base: RequestSettings
  readonly #exact = new Map<string, RequestSettings>()
  /** Wildcards, longest suffix first. */
  readonly #wildcards: Array<readonly [string, RequestSettings]> = []
  readonly #byOrigin: (origin: string) => RequestSettings

  constructor (base: RequestSettings, hosts: unknown, path: string) {
    this.#base = base
    if (hosts !== undefined) {
      if (typeof hosts !== 'object' || hosts === null || Array.isArray(hosts)) {
        throw new TypeError(`expected ${path} to be an object of host patterns, got ${describe(hosts)}`)
      }
      for (const [pattern, policy] of Object.entries(hosts as Record<string, HostPolicy>)) {
        const at = `${path}[${JSON.stringify(pattern)}]`
        if (!PATTERN.test(pattern)) {
          throw new TypeError(`expected ${path} keys to be lower-case host names, 'host:port' or '*.domain' patterns, got ${JSON.stringify(pattern)}`)
        }
        const settings = applyOwnPolicy(base, policy, at, HOST_POLICY_KEYS)
        if (pattern.startsWith('*.')) this.#wildcards.push([pattern.slice(1), settings])
        else this.#exact.set(pattern, settings)
      }
      this.#wildcards.sort((a, b) => b[0].length - a[0].length)
    }
    this.#byOrigin = memoize(1024, (origin) => this.#match(origin))
  }

  /** The settings for a request to `url` (normalised, absolute). */
  settingsFor (url: string): RequestSettings {
    if (this.#exact.size === 0 && this.#wildcards.length === 0) return this.#base
    // The origin is what decides, and parsing it out of a normalised URL needs no URL parser.
    const start = url.indexOf('//') + 2
    const end = url.indexOf('/', start)
    return this.#byOrigin(url.slice(0, end === -1 ? url.length : end))
  }

  #match (origin: string): RequestSettings {
    const scheme = origin.slice(0, origin.indexOf('//'))
    const authority = origin.slice(scheme.length + 2)
    const colon = authority.lastIndexOf(':')
    const hasPort = colon !== -1 && !authority.endsWith(']')
    const host = hasPort ? authority.slice(0, colon) : authority
    const port = hasPort ? authority.slice(colon + 1) : DEFAULT_PORTS[scheme]
    const exact = (port === undefined ? undefined : this.#exact.get(`${host}:${port}`)) ?? this.#exact.get(host)
    if (exact !== undefined) return exact
    for (const [suffix, settings] of this.#wildcards) if (host.endsWith(suffix)) return settings
    return this.#base
  }
}
