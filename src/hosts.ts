/**
 * Per-host policy: `hosts: { 'api.example.com': {…}, '*.example.com': {…}, 'localhost:8080': {…} }`.
 * The most specific pattern wins: an exact host and port, then an exact host, then the longest
 * wildcard (`*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`), then
 * the cache's own options. Each entry is applied over those options once, at construction.
 */
import { readFile } from 'node:fs/promises'
import { domainToASCII } from 'node:url'
import { memoize } from './memo.js'
import { applyOwnPolicy, HOST_POLICY_KEYS, type HostPolicy, type RequestSettings } from './settings.js'
import { describe, isOptionsObject } from './validate.js'

/** A leading `*.` and a domain, without a port: a wildcard matches host names, whatever the port. */
const WILDCARD = /^\*\.[a-z0-9_-]+(\.[a-z0-9_-]+)*$/
/** A domain's last label is never all digits: `*.0.0.1` names no domain, and would match 127.0.0.1 by its text. */
const NUMERIC_TOP_LABEL = /\.\d+$/
/** A host name or an IPv6 literal, with a port or not: what a URL's authority can hold. */
const EXACT = /^([a-z0-9_-]+(\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])(:\d+)?$/
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
      if (!isOptionsObject(hosts)) {
        throw new TypeError(`expected ${path} to be an object of host patterns, got ${describe(hosts)}`)
      }
      /** The pattern each exact host came from. */
      const named = new Map<string, string>()
      for (const [given, policy] of Object.entries(hosts as Record<string, HostPolicy>)) {
        const at = `${path}[${JSON.stringify(given)}]`
        const settings = applyOwnPolicy(base, policy, at, HOST_POLICY_KEYS)
        const pattern = inPunycode(given)
        if (pattern.startsWith('*.')) {
          if (!WILDCARD.test(pattern) || NUMERIC_TOP_LABEL.test(pattern)) throw badPattern(path, given)
          this.#wildcards.push([pattern.slice(1), settings])
        } else {
          const host = canonical(pattern, path, given)
          // `a.test:8080` and `a.test:08080` name one host: one would silently take the other's place.
          const earlier = named.get(host)
          if (earlier !== undefined) throw new TypeError(`expected ${path} to name each host once, got ${JSON.stringify(earlier)} and ${JSON.stringify(given)} for ${host}`)
          named.set(host, given)
          this.#exact.set(host, settings)
        }
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
    // A fully qualified name (a trailing dot) is the same host.
    const name = host.endsWith('.') ? host.slice(0, -1) : host
    const exact = (port === undefined ? undefined : this.#exact.get(`${name}:${port}`)) ?? this.#exact.get(name)
    if (exact !== undefined) return exact
    for (const [suffix, settings] of this.#wildcards) if (name.endsWith(suffix)) return settings
    return this.#base
  }
}

/**
 * A lower-case pattern naming an internationalised domain in Unicode, as a URL writes its host: in
 * punycode (`*.bücher.example` is `*.xn--bcher-kva.example`). Any other pattern as it is.
 */
function inPunycode (pattern: string): string {
  if (/^[\x21-\x7e]*$/.test(pattern) || pattern.toLowerCase() !== pattern) return pattern
  const wildcard = pattern.startsWith('*.') ? '*.' : ''
  const port = /:\d+$/.exec(pattern)?.[0] ?? ''
  const ascii = domainToASCII(pattern.slice(wildcard.length, pattern.length - port.length))
  return ascii === '' ? pattern : `${wildcard}${ascii}${port}`
}

/** `host` or `host:port` as a URL writes it (lower case, IPv6 compressed), or a TypeError naming the pattern `given`. */
function canonical (pattern: string, path: string, given: string): string {
  if (!EXACT.test(pattern)) throw badPattern(path, given)
  let url: URL
  try {
    url = new URL(`http://${pattern}`)
  } catch {
    throw badPattern(path, given)
  }
  // The pattern must be a host and port only, and what the URL made of it the same host.
  if (url.username !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.hostname === '' ||
      pattern.toLowerCase() !== pattern) throw badPattern(path, given)
  // The port as a number, as a URL's origin writes it (`:0080` is port 80): the key #match looks up.
  const explicitPort = /:(\d+)$/.exec(pattern)?.[1]
  return explicitPort === undefined ? url.hostname : `${url.hostname}:${Number(explicitPort)}`
}

function badPattern (path: string, pattern: string): TypeError {
  return new TypeError(`expected ${path} keys to be lower-case host names (in Unicode or punycode), 'host:port' or '*.domain' patterns, got ${JSON.stringify(pattern)}`)
}

/**
 * Per-host policies from a JSON file, for configuration that is text (CACHEDFETCH_HOSTS, the CLI's
 * --hosts); `what` names where the path came from. JSON has no functions, so no `key` hooks.
 */
export async function readHostsFile (path: string, what: string): Promise<Record<string, HostPolicy>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new Error(`${what}: cannot read ${path} (${(error as Error).message})`, { cause: error })
  }
  try {
    // An editor may save UTF-8 with a byte order mark, which JSON.parse refuses.
    return JSON.parse(text.replace(/^\uFEFF/, '')) as Record<string, HostPolicy>
  } catch (error) {
    throw new Error(`${what}: ${path} is not JSON (${(error as Error).message})`, { cause: error })
  }
}
