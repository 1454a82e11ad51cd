#!/usr/bin/env node
/**
 * `npx cachedfetch <url>`: a fetch through a cache, with what the cache did in plain sight — the
 * status, the Cache-Status, the time; `--repeat N` to watch it work, `-i` for the headers,
 * `--explain` for why the response is (not) stored, how long it is fresh, and what a revalidation
 * would send. Exit codes: 0 answered (whatever the HTTP status), 1 the request failed (unreachable
 * host, reset), 2 bad usage (a bad URL or option), 3 the store cannot be used.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { parseArgs } from 'node:util'
import { createCachedFetch, type CachedFetch } from './adapters/fetch.js'
import { readHostsFile } from './hosts.js'
import { isFieldValue, isToken } from './field-limits.js'
import { normalizeHeaders } from './key.js'
import { storeFromUrl, withoutPassword, type UrlStore } from './store/from-url.js'
import { renamedOptions } from './validate.js'

const USAGE = `usage: cachedfetch <url> [options]

  --store <url>       sqlite:./cache.db or redis://host:6379 (default: memory only)
  --namespace <name>  the cache's namespace in the store
  --hosts <file>      a JSON file of per-host policies
  -X, --method <m>    GET or HEAD (default GET)
  -H, --header <h>    a request header, 'Name: value' (repeatable)
  --repeat <n>        send the request n times, one after another (default 1)
  -i, --include       print the response headers
  --explain           why the response is (not) stored, its freshness and what revalidates it
  -h, --help          this text

exit codes: 0 answered, 1 request failed, 2 bad usage, 3 store unusable`

class UsageError extends Error {}

// no-color.org: NO_COLOR set to anything but the empty string turns colour off.
const color = process.stdout.isTTY && (process.env.NO_COLOR ?? '') === ''
const paint = (code: number, text: string): string => color ? `\x1b[${code}m${text}\x1b[0m` : text
const dim = (text: string): string => paint(2, text)

async function main (argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      store: { type: 'string' },
      namespace: { type: 'string' },
      hosts: { type: 'string' },
      method: { type: 'string', short: 'X', default: 'GET' },
      header: { type: 'string', short: 'H', multiple: true, default: [] },
      repeat: { type: 'string', default: '1' },
      include: { type: 'boolean', short: 'i', default: false },
      explain: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  if (values.help) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('give exactly one URL')
  const url = toUrl(positionals[0]!)
  const method = values.method.toUpperCase()
  if (method !== 'GET' && method !== 'HEAD') throw new UsageError(`-X takes GET or HEAD (the methods a cache serves), got ${JSON.stringify(values.method)}`)
  const repeat = Number(values.repeat)
  if (!Number.isSafeInteger(repeat) || repeat < 1) throw new UsageError(`--repeat must be a positive whole number, got ${JSON.stringify(values.repeat)}`)
  const headers = values.header.map(toHeader)

  let store: UrlStore | undefined
  try {
    store = values.store === undefined ? undefined : await storeFromUrl(values.store, '--store')
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(error.message)
    process.stderr.write(`cachedfetch: ${(error as Error).message}\n`)
    return 3
  }
  const hosts = values.hosts === undefined ? undefined : await readHostsFile(values.hosts, '--hosts').catch((error: unknown) => { throw new UsageError((error as Error).message) })
  let cachedFetch: CachedFetch
  try {
    cachedFetch = createCachedFetch({
      ...(store === undefined ? {} : { store: store.adapter }),
      ...(values.namespace === undefined ? {} : { namespace: values.namespace }),
      ...(hosts === undefined ? {} : { hosts })
    })
  } catch (error) {
    await store?.close()
    // Named as the user typed them, not as the options they became.
    const renamed = renamedOptions(error, { namespace: '--namespace', hosts: `--hosts ${values.hosts ?? ''}` })
    throw renamed instanceof TypeError ? new UsageError(renamed.message) : renamed
  }
  try {
    const opened = await storeUsable(cachedFetch, store)
    if (opened !== undefined) {
      process.stderr.write(`cachedfetch: the store ${withoutPassword(values.store ?? '')} cannot be used: ${opened}\n`)
      return 3
    }
    let last: Answered | undefined
    // Output closed early (`| head -1`): nothing more to show, so no more requests.
    let closed = false
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error
      closed = true
    })
    for (let i = 0; i < repeat && !closed; i++) {
      last = await once(cachedFetch, url, method, headers, values.include)
      // Whatever the answer stored is in before the next request, as a later request would find it.
      await cachedFetch.cache.flush()
    }
    if (values.explain && last !== undefined) printExplanation(cachedFetch, method, headers, last)
    return 0
  } catch (error) {
    process.stderr.write(`cachedfetch: ${method} ${url} failed: ${describeFailure(error)}\n`)
    return 1
  } finally {
    await cachedFetch.cache.close()
    await store?.close()
  }
}

interface Answered {
  readonly status: number
  readonly headers: Record<string, string>
  /** Where the answer came from: the URL asked for, or where redirects led. */
  readonly url: string
}

/** One try per request, whatever a host's policy in --hosts says: the CLI shows what the origin answered. */
const ONE_TRY = Object.freeze({ retry: false as const })

async function once (cachedFetch: CachedFetch, url: string, method: string, headers: Array<[string, string]>, include: boolean): Promise<Answered> {
  const started = performance.now()
  const response = await cachedFetch(url, { method, headers, cachePolicy: ONE_TRY })
  const body = await response.arrayBuffer()
  const ms = performance.now() - started
  const cacheStatus = response.headers.get('cache-status') ?? ''
  // Ours is the last member (RFC 9211 §2): one before it is a cache nearer the origin, which may be a cachedfetch too.
  const ours = lastMember(cacheStatus)
  const hit = /^cachedfetch; hit/.test(ours)
  // A stale response standing in for the origin's failure went forward: no hit (RFC 9211 §2.1), but served from the cache.
  const label = hit ? 'HIT ' : /^cachedfetch;.*detail=stale-if-error/.test(ours) ? 'STALE' : 'MISS'
  const shown = Object.fromEntries([...response.headers])
  process.stdout.write(`${paint(1, `${response.status} ${response.statusText}`)}  ${paint(label === 'MISS' ? 33 : 32, label)}  ${cacheStatus}  ${dim(`${ms.toFixed(1)} ms, ${body.byteLength} bytes`)}\n`)
  // The label and the Cache-Status are the last answer's: a redirect fetch followed was a request of its own.
  if (response.redirected) process.stdout.write(`  ${dim('redirected to')} ${response.url}\n`)
  if (include) for (const [name, value] of response.headers) process.stdout.write(`  ${dim(name + ':')} ${value}\n`)
  return { status: response.status, headers: shown, url: response.url }
}

/**
 * A structured-field List's last member (RFC 8941 §3.1), a comma inside a quoted string being none
 * of its commas. Read from the end: ours is last and well formed, whatever a member before it holds
 * (an unterminated quote).
 */
function lastMember (list: string): string {
  let quoted = false
  for (let i = list.length - 1; i >= 0; i--) {
    if (list[i] === '"' && list[i - 1] !== '\\') quoted = !quoted
    else if (!quoted && list[i] === ',') return list.slice(i + 1).trim()
  }
  return list.trim()
}

/** What the cache makes of the last answer, for the URL it came from. */
function printExplanation (cachedFetch: CachedFetch, method: string, headers: Array<[string, string]>, last: Answered): void {
  const request = { method, url: new URL(last.url).href, headers: normalizeHeaders(headers) }
  const { ['cache-status']: _status, ...received } = last.headers
  const e = cachedFetch.cache.explain(request, last.status, received)
  const lines = [
    '',
    paint(1, e.storable ? 'storable' : 'not storable'),
    ...e.reasons.map((reason) => `  - ${reason}`),
    `freshness lifetime  ${e.lifetime} s, from ${e.lifetimeFrom}`,
    `age                 ${e.age} s`,
    `fresh for           ${e.ttl > 0 ? `${e.ttl} s more` : `no longer (stale by ${-e.ttl} s)`}`,
    `stale windows       while revalidating ${e.staleWhileRevalidate} s, on error ${e.staleIfError} s`,
    `kept in the store   ${Math.round(e.retention / 1000)} s`,
    `to revalidate       ${Object.keys(e.revalidation).length === 0 ? 'nothing to send: no ETag or Last-Modified, so a full request' : Object.entries(e.revalidation).map(([name, value]) => `${name}: ${value}`).join(', ')}`
  ]
  process.stdout.write(lines.join('\n') + '\n')
}

/** `undefined` when the store answers; otherwise what its first read reported. */
async function storeUsable (cachedFetch: CachedFetch, store: UrlStore | undefined): Promise<string | undefined> {
  if (store === undefined) return undefined
  const errors: string[] = []
  const listen = (event: unknown): void => { errors.push(String((event as { error?: unknown }).error)) }
  subscribe('cachedfetch:store-error', listen)
  try {
    await cachedFetch.cache.lookup({ method: 'GET', url: 'http://cachedfetch.invalid/probe', headers: {} })
  } finally {
    unsubscribe('cachedfetch:store-error', listen)
  }
  return errors[0]
}

function toUrl (text: string): string {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new UsageError(`not a URL: ${JSON.stringify(withoutPassword(text))} (give an absolute http:// or https:// URL)`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`not an http:// or https:// URL: ${JSON.stringify(withoutPassword(text))}`)
  // fetch refuses a URL with credentials: bad input, said as such rather than as a failed request.
  if (url.username !== '' || url.password !== '') throw new UsageError('a URL with a user name or password, which fetch refuses: give credentials as a header (-H \'Authorization: …\')')
  return url.href
}


function toHeader (text: string): [string, string] {
  const colon = text.indexOf(':')
  const name = text.slice(0, Math.max(colon, 0)).trim()
  if (colon < 1 || !isToken(name)) {
    // Only what would be its name: the rest may be a credential (`-H 'Authorization Bearer …'`).
    const named = /^([-A-Za-z0-9]+)[\s:=]/.exec(text)?.[1]
    throw new UsageError(`a header is 'Name: value' with a name of letters, digits and -, got ${named === undefined ? 'one without a colon' : `one beginning ${JSON.stringify(named)}`} (the rest is not printed: it may be a credential)`)
  }
  const value = text.slice(colon + 1).trim()
  if (!isFieldValue(value)) throw new UsageError(`the value of the header ${name} holds a control character or a character past Latin-1, which HTTP refuses (the value is not printed: it may be a credential)`)
  return [name, value]
}

/** fetch's own message is "fetch failed"; what failed is in its cause (ECONNREFUSED, ENOTFOUND, …). */
function describeFailure (error: unknown): string {
  const { message, cause } = error as { message: string, cause?: { code?: string, message?: string } }
  const detail = [cause?.code, cause?.message].filter((part) => part !== undefined && part !== '').join(' ')
  return detail === '' ? message : `${message}: ${detail}`
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (error: unknown) => {
  if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true || error instanceof TypeError) {
    process.stderr.write(`cachedfetch: ${(error as Error).message}\n\n${USAGE}\n`)
    process.exitCode = 2
    return
  }
  process.stderr.write(`cachedfetch: ${(error as Error).stack ?? String(error)}\n`)
  process.exitCode = 1
})
