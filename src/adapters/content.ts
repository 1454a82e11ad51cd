/** Responses that carry no content whatever is stored (RFC 9110 §6.4.1, §9.3.2). */
export function hasNoContent (method: string, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 205 || status === 304 || status < 200
}
