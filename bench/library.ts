/** cachedfetch as the benchmark and its loops load it. */
import type * as cachedfetch from '../src/index.js'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

/** What the benchmark uses of cachedfetch. */
export type Library = Pick<typeof cachedfetch, 'cacheInterceptor' | 'createCache' | 'createCachedFetch'>

/**
 * The sources, or the build in `libDir` (`--lib dist`, after `npm run build`). tsx compiles src/
 * with esbuild's keepNames, which wraps every closure made per call in a defineProperty; the build
 * is the JavaScript that ships.
 */
export async function loadLibrary (libDir: string | undefined): Promise<Library> {
  if (libDir === undefined) return await import('../src/index.js')
  return await import(pathToFileURL(resolve(libDir, 'index.js')).href) as Library
}
