/**
 * The package as an application installs it: what `exports` resolves, from ES modules and from
 * CommonJS, and what the published files hold. Runs against dist/, which `npm ci` builds (prepare).
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { files: string[] }

describe('the installed package', () => {
  // An application of its own, with the package in its node_modules as npm links a local one.
  const app = mkdtempSync(join(tmpdir(), 'cachedfetch-app-'))
  mkdirSync(join(app, 'node_modules', '@types'), { recursive: true })
  symlinkSync(root, join(app, 'node_modules', 'cachedfetch'), 'dir')
  // What its own code imports beside the package, as npm would install them.
  symlinkSync(join(root, 'node_modules', 'undici'), join(app, 'node_modules', 'undici'), 'dir')
  symlinkSync(join(root, 'node_modules', '@types', 'node'), join(app, 'node_modules', '@types', 'node'), 'dir')
  afterAll(() => { rmSync(app, { recursive: true, force: true }) })

  const run = (script: string, type: 'commonjs' | 'module'): string =>
    execFileSync(process.execPath, [`--input-type=${type}`, '-e', script], { cwd: app, encoding: 'utf8' }).trim()

  it('is required from CommonJS (Node ≥ 20.19 loads ES modules so) with the same API as imported', () => {
    const required = run("console.log(Object.keys(require('cachedfetch')).sort().join(' '))", 'commonjs')
    const imported = run("const m = await import('cachedfetch'); console.log(Object.keys(m).sort().join(' '))", 'module')
    expect(required).toContain('createCachedFetch')
    expect(required).toBe(imported)
  })

  it('ships source maps that hold their sources, which the package does not ship', () => {
    const map = JSON.parse(readFileSync(join(root, 'dist', 'cache.js.map'), 'utf8')) as { sourcesContent?: string[] }
    expect(map.sourcesContent?.[0]).toContain('export class Cache')
  })

  it('type-checks as an application uses it, strictly and with the declarations checked too, with and without the DOM library', () => {
    writeFileSync(join(app, 'package.json'), '{ "type": "module" }')
    writeFileSync(join(app, 'main.ts'), [
      "import { Agent, request } from 'undici'",
      "import { cacheInterceptor, createCache, createCachedFetch, install, type Cache } from 'cachedfetch'",
      'export async function main (cache: Cache = createCache()): Promise<void> {',
      '  const agent = new Agent().compose(cacheInterceptor({ cache }))',
      "  await request('http://127.0.0.1/a', { dispatcher: agent, cacheMode: 'no-cache', cachePolicy: { staleIfError: 60 } })",
      '  // @ts-expect-error -- a ready cache and cache options together are refused',
      '  createCachedFetch({ cache, maxSize: 1024 })',
      '  // @ts-expect-error -- install() goes out through the global dispatcher',
      '  install({ dispatcher: new Agent() })',
      "  const response = await createCachedFetch({ dispatcher: agent, maxSize: 1024 })('http://127.0.0.1/a')",
      "  cache.explain({ url: 'http://127.0.0.1/a' }, response.status, response.headers)",
      '  // @ts-expect-error -- the engine\'s own methods are not in the declarations',
      '  cache.lookup',
      '}'
    ].join('\n'))
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    for (const lib of ['ES2023', 'ES2023,DOM,DOM.Iterable']) {
      const args = [tsc, '--noEmit', '--strict', '--skipLibCheck', 'false', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'ES2022', '--lib', lib, '--types', 'node', 'main.ts']
      const checked = spawnSync(process.execPath, args, { cwd: app, encoding: 'utf8' })
      expect(checked.stdout, lib).toBe('')
    }
  }, 60_000)

  it('ships the files the README links to for its users', () => {
    expect(pkg.files).toEqual(expect.arrayContaining(['dist', 'README.md', 'SECURITY.md', 'LICENSE']))
  })
})
