// Runs in: the Node process. Small questions about JavaScript values, for messages and
// checks (no imports, so that anything may use them).

/** `a string`, `an array`, `null`, … for messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  const t = typeof v;
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
}

/** `true` for `{…}` written as an object literal (or JSON), not arrays, null or class instances. */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
