/**
 * `node --import cachedfetch/register app.js`: an application that calls plain `fetch` gets the
 * cache from environment variables alone. Two runs of a script on one SQLite file: the second is a
 * HIT, and with Redis the application still exits when it is done; a hosts file gives freshness to an origin that sends none; a bad store URL stops the start
 * with an error that names the variable. The suite runs the source through tsx; the package maps
 * `cachedfetch/register` to the build of the same file.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { respond } from './helpers/origin.js'
import { adminClient, deleteNamespace, reachRedis, REDIS_URL, testNamespace } from './helpers/redis.js'
import { teardown } from './helpers/teardown.js'

const REGISTER = fileURLToPath(new URL('../src/register.ts', import.meta.url))
const APP = fileURLToPath(new URL('./processes/plain-fetch.ts', import.meta.url))
const opened = teardown()
afterEach(() => opened.close())

const admin = adminClient()
const unreachable = await reachRedis(admin, 'test/register.test.ts (its Redis case)')
const namespace = testNamespace()
afterAll(async () => {
  await deleteNamespace(admin, namespace)
  if (admin.isReady) await admin.close()
})

function tempDir (): string {
  const dir = mkdtempSync(join(tmpdir(), 'cachedfetch-register-'))
  opened.add({ close: () => rm(dir, { recursive: true, force: true }) })
  return dir
}

interface Printed { status: number, cacheStatus: string | null, body: string }

/**
 * A module to preload before register, in `dir`: it makes @keyv/sqlite resolve to a module that
 * throws as it loads, as one whose native build is missing does.
 */
function brokenSqlite (dir: string): string {
  writeFileSync(join(dir, 'broken.mjs'), "throw new Error('Could not locate the bindings file')\n")
  writeFileSync(join(dir, 'hooks.mjs'), `export async function resolve (specifier, context, next) {
  return specifier === '@keyv/sqlite' ? { url: ${JSON.stringify(pathToFileURL(join(dir, 'broken.mjs')).href)}, shortCircuit: true } : next(specifier, context)
}\n`)
  writeFileSync(join(dir, 'preload.mjs'), `import { register } from 'node:module'\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)})\n`)
  return join(dir, 'preload.mjs')
}

async function run (url: string, env: Record<string, string>, preload: string[] = []): Promise<Printed> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', ...preload, '--import', REGISTER, APP, url],
    { env: { ...process.env, ...env }, timeout: 20_000 })
  return JSON.parse(stdout) as Printed
}

describe('node --import cachedfetch/register', () => {
  it('gives plain fetch a cache on the SQLite file of CACHEDFETCH_STORE: the second run is a HIT', async () => {
    const origin = await opened.origin({ '/report': respond(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }, 'report') })
    const env = { CACHEDFETCH_STORE: `sqlite:${join(tempDir(), 'cache.db')}` }
    const first = await run(`${origin.url}/report`, env)
    expect(first).toMatchObject({ status: 200, body: 'report' })
    expect(first.cacheStatus).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    const second = await run(`${origin.url}/report`, env)
    expect(second).toMatchObject({ status: 200, body: 'report' })
    expect(second.cacheStatus).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(origin.hits('/report')).toBe(1)
  }, 30_000)

  it('reads per-host policies from the JSON file of CACHEDFETCH_HOSTS', async () => {
    // No freshness from the origin: only the hosts file's defaultTtl makes it storable.
    const origin = await opened.origin({ '/plain': respond(200, { 'content-type': 'text/plain' }, 'plain') })
    const dir = tempDir()
    writeFileSync(join(dir, 'hosts.json'), JSON.stringify({ '127.0.0.1': { defaultTtl: 60 } }))
    const env = { CACHEDFETCH_STORE: `sqlite:${join(dir, 'cache.db')}`, CACHEDFETCH_HOSTS: join(dir, 'hosts.json') }
    await run(`${origin.url}/plain`, env)
    expect((await run(`${origin.url}/plain`, env)).cacheStatus).toMatch(/^cachedfetch; hit/)
    expect(origin.hits('/plain')).toBe(1)
  }, 30_000)

  it.skipIf(unreachable !== undefined)('with a Redis store, lets the application exit when it is done, its entry stored', async () => {
    const origin = await opened.origin({ '/report': respond(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }, 'report') })
    // execFile's timeout kills a process that hangs: the test then fails on the rejection.
    const env = { CACHEDFETCH_STORE: REDIS_URL, CACHEDFETCH_NAMESPACE: namespace }
    expect((await run(`${origin.url}/report`, env)).cacheStatus).toMatch(/stored$/)
    expect((await run(`${origin.url}/report`, env)).cacheStatus).toMatch(/^cachedfetch; hit/)
    expect(origin.hits('/report')).toBe(1)
  }, 30_000)

  it('refuses to start with a store URL it cannot use, naming the variable', async () => {
    await expect(run('http://127.0.0.1:1/', { CACHEDFETCH_STORE: 'memcached://localhost' })).rejects.toThrow(/CACHEDFETCH_STORE/)
    // Its password is not printed, though the URL does not parse.
    const refused = await run('http://127.0.0.1:1/', { CACHEDFETCH_STORE: 'redis://:s3cret@127.0.0.1:99999' }).then(() => undefined, (error: Error) => error.message)
    expect(refused).toMatch(/expected CACHEDFETCH_STORE to be a Redis URL, .*redis:\/\/\*\*\*@127\.0\.0\.1:99999/)
    expect(refused).not.toMatch(/s3cret/)
  })

  it('tells a setting it refuses in one line, with no stack, and exits with status 1', async () => {
    const refused = await run('http://127.0.0.1:1/', { CACHEDFETCH_HOSTS: join(tempDir(), 'missing.json') })
      .then(() => undefined, (error: Error & { code: number, stderr: string }) => error)
    expect(refused?.code).toBe(1)
    expect(refused?.stderr).toMatch(/^cachedfetch\/register: CACHEDFETCH_HOSTS: cannot read .*missing\.json \(ENOENT[^\n]*\n$/)
  })

  it('tells a store package that is installed but fails to load by its own error, not as one to install', async () => {
    const dir = tempDir()
    const refused = await run('http://127.0.0.1:1/', { CACHEDFETCH_STORE: `sqlite:${join(dir, 'cache.db')}` }, ['--import', brokenSqlite(dir)])
      .then(() => undefined, (error: Error & { stderr: string }) => error.stderr)
    expect(refused).toBe('cachedfetch/register: CACHEDFETCH_STORE: the package @keyv/sqlite failed to load: Could not locate the bindings file\n')
  })

  it('takes an empty CACHEDFETCH_NAMESPACE for an unset one, as it does the other two', async () => {
    const origin = await opened.origin({ '/report': respond(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }, 'report') })
    expect(await run(`${origin.url}/report`, { CACHEDFETCH_NAMESPACE: '', CACHEDFETCH_STORE: '', CACHEDFETCH_HOSTS: '' })).toMatchObject({ status: 200, body: 'report' })
  })

  it('refuses a namespace, or a policy in the hosts file, naming the variable it came from', async () => {
    await expect(run('http://127.0.0.1:1/', { CACHEDFETCH_NAMESPACE: 'My_App' })).rejects.toThrow(/expected CACHEDFETCH_NAMESPACE to be/)
    const hosts = join(tempDir(), 'hosts.json')
    writeFileSync(hosts, JSON.stringify({ '127.0.0.1': { defaultTtl: -5 } }))
    await expect(run('http://127.0.0.1:1/', { CACHEDFETCH_HOSTS: hosts })).rejects.toThrow(/expected CACHEDFETCH_HOSTS \(.*hosts\.json\)\["127\.0\.0\.1"\]\.defaultTtl/)
  })

  it('is what the package exports as cachedfetch/register', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { exports: Record<string, { import: string }> }
    expect(pkg.exports['./register']?.import).toBe('./dist/register.js')
  })
})
