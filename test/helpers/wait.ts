/**
 * Waiting on what a test set in motion, without asserting on time: a gate an origin holds its
 * answer (or the rest of a body) behind until the test releases it; polling until a condition
 * holds, and a bound on a promise, both liveness bounds that turn a hang into a failure naming what
 * never came; and a short pause that lets anything already on its way arrive.
 */

/** A promise the test resolves: origins wait on it before answering (or before the rest of a body). */
export interface Gate {
  readonly promise: Promise<void>
  readonly release: () => void
}

export function gate (): Gate {
  let release!: () => void
  const promise = new Promise<void>((resolve) => { release = resolve })
  return { promise, release }
}

/** Waits until `condition` holds; a liveness bound, not a timing assertion. */
export async function waitFor (condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

/** Settles as `promise` does, or rejects when it has not within `ms`: a hang becomes a failure, not a timeout. */
export async function within<T> (promise: Promise<T>, what: string, ms = 2000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const stalled = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (stalled)`)), ms)
  })
  try {
    return await Promise.race([promise, stalled])
  } finally {
    clearTimeout(timer)
  }
}

/** Lets the event loop turn a few times, so that anything already on its way has arrived. */
export function settle (): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 30))
}
