/**
 * The package as an application installs it: what `exports` resolves, from ES modules and from
 * CommonJS, and what the published files hold. Runs against dist/, which `npm ci` builds (prepare).
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { files: string[] }

describe('the installed package', () => {
  // An application of its own, with the package in its node_modules as npm links a local one.
  const app = mkdtempSync(join(tmpdir(), 'cachedfetch-app-'))
  mkdirSync(join(app, 'node_modules'))
  symlinkSync(root, join(app, 'node_modules', 'cachedfetch'), 'dir')
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

  it('ships the files the README links to for its users', () => {
    expect(pkg.files).toEqual(expect.arrayContaining(['dist', 'README.md', 'SECURITY.md', 'LICENSE']))
  })
})
