/**
 * Redis for tests: the one at REDIS_URL (default redis://127.0.0.1:6379), reached once per file;
 * stores built as the README builds them, under a namespace of the file's own, whose keys are
 * deleted after the run; and a private redis-server on a port of its own for the tests that stop
 * and restart Redis, so that they never take the shared one away from other test files.
 *
 * Without a reachable Redis the suites skip with a loud warning, except under CI, where that is a
 * failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import KeyvRedis, { createClient } from '@keyv/redis'
import { within } from './wait.js'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

export type RedisClient = ReturnType<typeof adminClient>

/** A client of the test's own, to look at and tamper with what the caches stored. */
export function adminClient (url = REDIS_URL) {
  const admin = createClient({ url, socket: { connectTimeout: 1000, reconnectStrategy: false } })
  admin.on('error', () => {})
  return admin
}

/**
 * Connects `admin`; `undefined` when Redis answers PING, otherwise why not. Under CI an unreachable
 * Redis throws; elsewhere the caller skips its suite after this warning.
 */
export async function reachRedis (admin: RedisClient, file: string): Promise<string | undefined> {
  let reason: string | undefined
  try {
    await within(admin.connect(), 'connect to Redis', 1500)
    const pong = await within(admin.ping(), 'PING', 1000)
    if (pong !== 'PONG') reason = `PING answered ${String(pong)}`
  } catch (error) {
    if (admin.isOpen) admin.destroy()
    reason = error instanceof Error ? error.message : String(error)
  }
  if (reason !== undefined && process.env.CI !== undefined) {
    throw new Error(`Redis at ${REDIS_URL} is not reachable (${reason}); CI must run ${file}`)
  }
  if (reason !== undefined) {
    console.warn(`\n*** SKIPPING ${file}: Redis at ${REDIS_URL} is not reachable (${reason}). Start one or set REDIS_URL. ***\n`)
  }
  return reason
}

/** A namespace no other run uses: the keys a test writes, and the only keys it deletes. */
export function testNamespace (): string {
  return `cachedfetch-test-${randomBytes(8).toString('hex')}`
}

/** Deletes every key whose name contains `namespace`. */
export async function deleteNamespace (admin: RedisClient, namespace: string): Promise<void> {
  if (!admin.isReady) return
  const keys: string[] = []
  for await (const batch of admin.scanIterator({ MATCH: `*${namespace}*`, COUNT: 500 })) keys.push(...batch)
  for (const key of keys) await admin.unlink(key)
}

/**
 * A Redis store adapter as the README builds one: commands fail at once while the client is not
 * connected, and @keyv/redis throws its errors. `close()` ends its client.
 */
export function redisAdapter (url = REDIS_URL): { adapter: KeyvRedis<unknown>, close: () => Promise<void> } {
  const client = createClient({ url, disableOfflineQueue: true })
  const adapter = new KeyvRedis(client, { throwOnErrors: true })
  return {
    adapter,
    close: async () => {
      if (client.isReady) await client.close()
      else if (client.isOpen) client.destroy()
    }
  }
}

/** A redis-server of the test's own, on a free port, that the test may stop and start again. */
export interface PrivateRedis {
  readonly url: string
  /** `redis-cli shutdown nosave`: the server goes away at once, as in an outage. */
  stop (): void
  /** Starts it again on the same port; resolves once it answers. */
  start (): Promise<void>
  close (): Promise<void>
}

export function hasRedisServer (): boolean {
  return spawnSync('redis-server', ['--version']).status === 0
}

export async function privateRedis (): Promise<PrivateRedis> {
  const port = await freePort()
  let server: ChildProcess | undefined
  const start = async (): Promise<void> => {
    server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    const until = Date.now() + 5000
    while (spawnSync('redis-cli', ['-p', String(port), 'ping']).stdout?.toString().trim() !== 'PONG') {
      if (Date.now() > until) throw new Error(`redis-server on port ${port} did not start`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => { spawnSync('redis-cli', ['-p', String(port), 'shutdown', 'nosave']) },
    start,
    close: async () => {
      spawnSync('redis-cli', ['-p', String(port), 'shutdown', 'nosave'])
      if (server?.exitCode === null) await new Promise((resolve) => server!.once('exit', resolve))
    }
  }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}
