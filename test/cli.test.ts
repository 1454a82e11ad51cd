/**
 * `npx cachedfetch <url>`: run as a user runs it (a process of its own, here from the source
 * through tsx) against a loopback origin. Twice on one SQLite file it prints MISS, then HIT;
 * `--repeat` shows the cache at work in one run; `--explain` says why and for how long; bad
 * usage, an unreachable host and an unusable store end with their documented exit codes and a
 * message that says what is wrong.
 */
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { respond } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { withoutPassword } from '../src/store/from-url.js'

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const opened = teardown()
afterEach(() => opened.close())

interface Run { code: number, stdout: string, stderr: string }

function cli (...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { timeout: 20_000, env: { ...process.env, NO_COLOR: '1' } }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr })
    })
  })
}

function databaseFile (): string {
  const dir = mkdtempSync(join(tmpdir(), 'cachedfetch-cli-'))
  opened.add({ close: () => rm(dir, { recursive: true, force: true }) })
  return join(dir, 'cache.db')
}

const FRESH = { 'content-type': 'text/plain', 'cache-control': 'max-age=60', etag: '"v1"' }

describe('the cachedfetch command', () => {
  it('prints MISS, then HIT on a second run with the same SQLite store', async () => {
    const origin = await opened.origin({ '/doc': respond(200, FRESH, 'doc') })
    const store = `sqlite:${databaseFile()}`
    const first = await cli(`${origin.url}/doc`, '--store', store)
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/^200 OK {2}MISS {2}cachedfetch; fwd=uri-miss; fwd-status=200; stored {2}[\d.]+ ms, 3 bytes\n$/)
    const second = await cli(`${origin.url}/doc`, '--store', store)
    expect(second.stdout).toMatch(/^200 OK {2}HIT {3}cachedfetch; hit; ttl=\d+ {2}[\d.]+ ms, 3 bytes\n$/)
    expect(origin.hits('/doc')).toBe(1)
  }, 30_000)

  it('shows the cache at work with --repeat, the headers with -i, and why with --explain', async () => {
    const origin = await opened.origin({ '/doc': respond(200, FRESH, 'doc') })
    const run = await cli(`${origin.url}/doc`, '--repeat', '3', '-i', '--explain')
    expect(run.code).toBe(0)
    const statuses = run.stdout.split('\n').filter((line) => /^\d{3} /.test(line)).map((line) => line.split(/ {2}/)[1])
    expect(statuses.map((status) => status?.trim())).toEqual(['MISS', 'HIT', 'HIT'])
    expect(run.stdout).toContain('  etag: "v1"')
    expect(run.stdout).toMatch(/\nstorable\n/)
    expect(run.stdout).toMatch(/freshness lifetime {2}60 s, from max-age/)
    expect(run.stdout).toMatch(/to revalidate {7}if-none-match: "v1"/)
    expect(origin.hits('/doc')).toBe(1)
  }, 30_000)

  it('explains no stale window a must-revalidate response could never be served in', async () => {
    const origin = await opened.origin({ '/strict': respond(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60, must-revalidate, stale-while-revalidate=30, stale-if-error=30' }, 'strict') })
    const run = await cli(`${origin.url}/strict`, '--explain')
    expect(run.stdout).toMatch(/stale windows {7}while revalidating 0 s, on error 0 s/)
  }, 30_000)

  it('explains why a response is not stored', async () => {
    const origin = await opened.origin({ '/secret': respond(200, { 'content-type': 'text/plain', 'cache-control': 'private, max-age=60' }, 'mine') })
    const run = await cli(`${origin.url}/secret`, '--explain')
    expect(run.stdout).toMatch(/\nnot storable\n {2}- the response is private, and this cache is shared/)
  }, 30_000)

  it.each([
    ['a bad URL', 2, ['not a url'], /cachedfetch: not a URL: "not a url"/],
    ['a URL with credentials, which fetch refuses', 2, ['http://user:s3cret@127.0.0.1/'], /a URL with a user name or password/],
    ['an unknown option', 2, ['http://127.0.0.1/', '--frobnicate'], /Unknown option '--frobnicate'/],
    ['a header that is not one', 2, ['http://127.0.0.1/', '-H', 'Bad Name: x'], /a header is 'Name: value'/],
    ['a header value with a control character', 2, ['http://127.0.0.1/', '-H', 'X-Note: a\x01b'], /the value of the header X-Note holds a control character/],
    ['a header value past Latin-1', 2, ['http://127.0.0.1/', '-H', 'X-Note: 5 €'], /the value of the header X-Note holds/],
    ['a method a cache does not serve', 2, ['http://127.0.0.1/', '-X', 'POST'], /-X takes GET or HEAD/],
    ['a Redis URL node-redis cannot read, without printing its password', 2, ['http://127.0.0.1/', '--store', 'redis://:s3cret@127.0.0.1:6379/abc'], /expected --store to be a Redis URL, .*got "redis:\/\/:\*\*\*@127\.0\.0\.1:6379\/abc": Invalid pathname/],
    ['a Redis URL that does not parse, without printing its password', 2, ['http://127.0.0.1/', '--store', 'redis://:s3cret@127.0.0.1:99999'], /got "redis:\/\/\*\*\*@127\.0\.0\.1:99999": Invalid URL/],
    ['a Redis URL that does not parse, with a password holding / and @', 2, ['http://127.0.0.1/', '--store', 'redis://default:s3cret/x@y==@127.0.0.1:99999'], /got "redis:\/\/\*\*\*@127\.0\.0\.1:99999"/],
    ['a store of an unknown kind', 2, ['http://127.0.0.1/', '--store', 'memcached://x'], /--store to be a redis:\/\/, rediss:\/\/ or sqlite: URL/],
    ['an unreachable host', 1, ['http://no-such-host.invalid/'], /GET http:\/\/no-such-host\.invalid\/ failed: fetch failed: ENOTFOUND/],
    ['a store that cannot be opened', 3, ['http://127.0.0.1/', '--store', 'sqlite:/nonexistent-dir/x/cache.db'], /the store sqlite:\/nonexistent-dir\/x\/cache\.db cannot be used: .*SQLITE_CANTOPEN/],
    ['a namespace it refuses, named as typed', 2, ['http://127.0.0.1/', '--namespace', 'My_App'], /cachedfetch: expected --namespace to be 1 to 64 lower-case letters/],
    // Nothing listens on port 1: the store cannot be used, and its password is not printed.
    ['a Redis it cannot reach, without printing its password', 3, ['http://127.0.0.1/', '--store', 'redis://:s3cret@127.0.0.1:1'], /the store redis:\/\/:\*\*\*@127\.0\.0\.1:1 cannot be used/]
  ] as const)('ends %s with exit code %i and a message saying so', async (_name, code, args, message) => {
    const run = await cli(...args)
    expect(run.code).toBe(code)
    expect(run.stderr).toMatch(message)
    expect(run.stderr).not.toMatch(/s3cret/)
  }, 30_000)

  it('reads a hosts file an editor saved with a byte order mark', async () => {
    const origin = await opened.origin({ '/plain': respond(200, { 'content-type': 'text/plain' }, 'plain') })
    const hosts = join(databaseFile(), '..', 'hosts.json')
    writeFileSync(hosts, '\uFEFF' + JSON.stringify({ '127.0.0.1': { defaultTtl: 30 } }))
    const run = await cli(`${origin.url}/plain`, '--repeat', '2', '--hosts', hosts)
    expect(run.code).toBe(0)
    expect(run.stdout.split('\n').filter((line) => /^\d{3} /.test(line)).map((line) => line.split(/ {2}/)[1]?.trim())).toEqual(['MISS', 'HIT'])
  }, 30_000)

  it('says where a redirect led, and explains the answer from there, under that host\'s policy', async () => {
    const origin = await opened.origin()
    const target = `${origin.url.replace('127.0.0.1', 'localhost')}/doc`
    origin.route('/old', respond(302, { location: target }))
    origin.route('/doc', respond(200, FRESH, 'doc'))
    // The target's host has a policy of its own; the host asked first has none.
    const hosts = join(databaseFile(), '..', 'hosts.json')
    writeFileSync(hosts, JSON.stringify({ localhost: { forceTtl: 999 } }))
    const run = await cli(`${origin.url}/old`, '--repeat', '2', '--explain', '--hosts', hosts)
    expect(run.code).toBe(0)
    expect(run.stdout.split('\n').filter((line) => line.includes('redirected to'))).toEqual(Array.from({ length: 2 }, () => `  redirected to ${target}`))
    expect(run.stdout).toMatch(/freshness lifetime {2}999 s, from forceTtl/)
    expect([origin.hits('/old'), origin.hits('/doc')]).toEqual([2, 1])
  }, 30_000)
})

describe('a store URL as the CLI and register print it', () => {
  it.each([
    ['redis://:s3cret@127.0.0.1:6379', 'redis://:***@127.0.0.1:6379'],
    // Parsed without the password it holds, or not at all: masked from the scheme to the last @, the user too.
    ['redis://default:1234/s3cret@host:6379', 'redis://***@host:6379'],
    ['redis://default:s3/cr@et@host', 'redis://***@host'],
    ['redis:default:s3cret@host', 'redis:***@host'],
    ['redis:/default:s3cret@host', 'redis:/***@host'],
    ['default:s3cret@host:6379', 'default:***@host:6379'],
    ['"redis://user:s3cret@host"', '"redis://***@host"'],
    [' redis://user:s3cret@host', 'redis://user:***@host'],
    ['redis://app@prod:s3cret@host:6379', 'redis://app%40prod:***@host:6379'],
    ['redis://user@host:6379', 'redis://***@host:6379'],
    ['redis://127.0.0.1:6379/2', 'redis://127.0.0.1:6379/2'],
    ['sqlite:./cache.db', 'sqlite:./cache.db']
  ])('prints %j as %j', (given, printed) => {
    expect(withoutPassword(given)).toBe(printed)
  })
})

describe('the command line, told what it must not do', () => {
  it('keeps retries off ("it shows what the origin answered") even when the --hosts file sets retry for the host', async () => {
    const origin = await opened.origin({ '/busy': respond(503, { 'content-type': 'text/plain', 'retry-after': '0' }, 'busy') })
    // The same file an application gives CACHEDFETCH_HOSTS, with retries for its API host.
    const hosts = join(databaseFile(), '..', 'hosts.json')
    writeFileSync(hosts, JSON.stringify({ '127.0.0.1': { retry: { limit: 3 } } }))
    const run = await cli(`${origin.url}/busy`, '--hosts', hosts)
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^503 Service Unavailable {2}MISS/)
    expect(origin.hits('/busy')).toBe(1)
  }, 30_000)

  it('labels a miss MISS though an upstream cache named cachedfetch said hit in its own Cache-Status member', async () => {
    // Another service built on cachedfetch in front: its member comes first, this cache's is appended last.
    const origin = await opened.origin({ '/up': respond(200, { 'content-type': 'text/plain', 'cache-status': 'cachedfetch; hit; ttl=5', 'cache-control': 'no-store' }, 'up') })
    const run = await cli(`${origin.url}/up`)
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^200 OK {2}MISS {2}cachedfetch; hit; ttl=5, cachedfetch; fwd=uri-miss; fwd-status=200 /)
  }, 30_000)

  it('ends quietly, with no unhandled EPIPE and stack trace, when its output is closed early (cachedfetch … | head -1)', async () => {
    const origin = await opened.origin({ '/doc': respond(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }, 'doc') })
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, `${origin.url}/doc`, '--repeat', '5000'], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    // As `head -1` does: read the first line, then close the pipe.
    child.stdout.once('data', () => { child.stdout.destroy() })
    await new Promise<void>((resolve) => child.on('close', () => resolve()))
    expect(stderr).not.toMatch(/Unhandled 'error' event|EPIPE/)
  }, 30_000)

  it.each([
    ['a URL that does not parse', 'http://user:s3cret@example.com:99999/'],
    ['a URL of another scheme', 'ftp://user:s3cret@example.com/'],
    ['a URL with a space in its host', 'https://user:s3cret@exa mple.com/']
  ])('does not print the password of %s it refuses, as it does not for an http URL with credentials', async (_name, url) => {
    const run = await cli(url)
    expect(run.code).toBe(2)
    expect(run.stderr).not.toMatch(/s3cret/)
  }, 30_000)

  it('does not print a credential given as a header without its colon (it refuses the value of a bad header for that reason)', async () => {
    const run = await cli('http://127.0.0.1:1/', '-H', 'Authorization Bearer s3cret')
    expect(run.code).toBe(2)
    expect(run.stderr).not.toMatch(/s3cret/)
  }, 30_000)

  it('labels a hit HIT though an upstream cache\'s member before ours holds an unterminated quoted string', async () => {
    const origin = await opened.origin({ '/a': respond(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', 'cache-status': 'upstream; detail="oops' }, 'x') })
    const run = await cli(`${origin.url}/a`, '--repeat', '2')
    expect(run.code).toBe(0)
    const labels = run.stdout.split('\n').filter((line) => /^\d{3} /.test(line)).map((line) => line.split(/ {2}/)[1]?.trim())
    expect(labels).toEqual(['MISS', 'HIT'])
    expect(run.stdout).toContain('cachedfetch; hit;')
    expect(origin.hits('/a')).toBe(1)
  }, 30_000)

  it('does not print a credential given as a header written Name=value (no colon, no space)', async () => {
    const run = await cli('http://127.0.0.1:1/', '-H', 'X-Api-Key=s3cret')
    expect(run.code).toBe(2)
    expect(run.stderr).not.toMatch(/s3cret/)
  }, 30_000)
})
