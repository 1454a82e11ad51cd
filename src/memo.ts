/**
 * Bounded memos for values that come again and again: URLs, header values, Cache-Control fields.
 * One copy of each is kept (10 000 stored responses with the same Content-Type share one string)
 * and the work of computing it is done once. Past `limit` entries a memo starts over, so that the
 * hot path pays a Map lookup and no LRU bookkeeping. A key longer than `longest` characters is
 * computed each time and not kept, so that values an origin controls cannot fill a memo with
 * kilobytes each.
 */
export function memoize<T> (limit: number, compute: (key: string) => T, longest = Infinity): (key: string) => T {
  const memo = new Map<string, T>()
  return (key) => {
    if (key.length > longest) return compute(key)
    let value = memo.get(key)
    if (value === undefined) {
      if (memo.size >= limit) memo.clear()
      memo.set(key, value = compute(key))
    }
    return value
  }
}

/**
 * A memo of values derived from objects, held weakly, for the last `limit` objects asked about:
 * past that it starts over, so that it holds values for what is used now, not for every object
 * that ever was.
 */
export function memoizeWeakly<K extends object, V> (limit: number, compute: (key: K) => V): (key: K) => V {
  let memo = new WeakMap<K, V>()
  let size = 0
  return (key) => {
    let value = memo.get(key)
    if (value === undefined) {
      if (size >= limit) {
        memo = new WeakMap()
        size = 0
      }
      memo.set(key, value = compute(key))
      size++
    }
    return value
  }
}

/** The one copy of a short string that is kept; a long one (a cookie, a big Link field) as it is. */
export const intern = memoize(4096, (value) => value, 256)
