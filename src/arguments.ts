// Runs in: the Node process. Checks what only JavaScript can get wrong before anything
// crosses into the addon: values JSON cannot carry (NaN, Infinity, functions, bigints,
// cycles would otherwise vanish or turn into `null` on the way), the command line, and the
// per-call options. Everything else about a policy is the native core's to judge.
import { CorralError } from './errors';
import { describe } from './values';

/**
 * The policy as JSON for the native normaliser. A value JSON would silently drop or turn
 * into `null` is refused here, naming its field; non-objects are refused as `policy`.
 */
export function policyJson(policy: unknown): string {
  if (policy === undefined || policy === null) return '{}';
  if (typeof policy !== 'object' || Array.isArray(policy)) {
    throw new CorralError('POLICY_INVALID', `the policy must be an object, got ${describe(policy)}`, { field: 'policy' });
  }
  checkJsonable(policy, '', new Set());
  return JSON.stringify(policy);
}

/** Walks `value` and refuses what JSON.stringify would not carry faithfully. */
function checkJsonable(value: unknown, field: string, seen: Set<object>): void {
  const at = field || 'policy';
  switch (typeof value) {
    case 'number':
      if (!Number.isFinite(value)) throw new CorralError('POLICY_INVALID', `expected a finite number, got ${value}`, { field: at });
      return;
    case 'string':
    case 'boolean':
    case 'undefined':
      return;
    case 'object':
      break;
    default:
      throw new CorralError('POLICY_INVALID', `a ${typeof value} cannot be part of a policy`, { field: at });
  }
  if (value === null) return;
  if (seen.has(value)) throw new CorralError('POLICY_INVALID', 'the policy refers to itself (a cycle)', { field: at });
  seen.add(value);
  if (Array.isArray(value)) {
    value.forEach((v, i) => checkJsonable(v, `${field}[${i}]`, seen));
  } else if (typeof (value as { toJSON?: unknown }).toJSON !== 'function') {
    for (const [k, v] of Object.entries(value)) checkJsonable(v, field ? `${field}.${k}` : k, seen);
  }
  seen.delete(value);
}

/** The command: a non-empty array of strings. */
export function checkArgv(argv: unknown): string[] {
  if (!Array.isArray(argv) || argv.length === 0) {
    throw new CorralError('POLICY_INVALID', 'the command must be a non-empty array of strings', { field: 'argv' });
  }
  argv.forEach((a, i) => {
    if (typeof a !== 'string') throw new CorralError('POLICY_INVALID', `expected a string, got ${describe(a)}`, { field: `argv[${i}]` });
  });
  return [...(argv as string[])];
}

/** `options.input` as bytes: a string, Buffer or Uint8Array. */
export function inputBytes(input: unknown, field = 'input'): Buffer | undefined {
  if (input === undefined) return undefined;
  if (typeof input === 'string') return Buffer.from(input);
  if (input instanceof Uint8Array) return Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  throw new CorralError('POLICY_INVALID', `expected a string, Buffer or Uint8Array, got ${describe(input)}`, { field });
}

/** `options.signal`: an AbortSignal, or nothing. */
export function abortSignal(signal: unknown, field = 'signal'): AbortSignal | undefined {
  if (signal === undefined || signal === null) return undefined;
  if (signal instanceof AbortSignal) return signal;
  throw new CorralError('POLICY_INVALID', `expected an AbortSignal, got ${describe(signal)}`, { field });
}

/** Options objects: a plain object or nothing. */
export function optionsObject<T extends object>(options: unknown, field = 'options'): Partial<T> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new CorralError('POLICY_INVALID', `expected an object, got ${describe(options)}`, { field });
  }
  return options as Partial<T>;
}

