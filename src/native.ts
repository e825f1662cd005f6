import type { RunLimits } from './result';
// The napi-generated loader (binding.cjs, committed, never edited by hand) finds the
// .node file beside it in a source build, or in the per-platform npm package.
import { CorralError, fromNative } from './errors';

interface CallerContext {
  cwd: string;
  env: Record<string, string>;
}

export interface NativeRunOutput {
  info: {
    status: { kind: 'exited'; code: number } | { kind: 'signaled'; signal: number };
    wallTimeUs: number;
    userTimeUs: number;
    systemTimeUs: number;
    peakMemoryBytes: number;
    timedOut: boolean;
    truncated?: boolean;
    oomKilled?: boolean;
    peakMemoryTree?: boolean;
    limits?: RunLimits;
    caveats: { code: string; message: string; field?: string }[];
    changes?: { path: string; kind: 'added' | 'modified' | 'deleted'; dir: boolean; size: number }[];
    violations?: { destination: string; port: number; rule?: string | null; reason: string; protocol: string }[];
  };
  stdout: Buffer;
  stderr: Buffer;
  captured?: { commit(): Promise<void>; discard(): void } | null;
}

interface Binding {
  check(): unknown;
  plan(policyJson: string, argv: string[], ctx: CallerContext): unknown;
  profiles(): unknown;
  run(policyJson: string, argv: string[], ctx: CallerContext, stdin?: Buffer | null, stdio?: number[] | null): Promise<NativeRunOutput>;
  spawn(policyJson: string, argv: string[], ctx: CallerContext, withStdin: boolean, pty: { cols: number; rows: number } | null): Promise<unknown>;
  resizeTerminal(fd: number, size: { cols: number; rows: number }): void;
}

let binding: Binding | undefined;

function load(): Binding {
  if (!binding) {
    try {
      binding = require('../binding.cjs') as Binding;
    } catch (e) {
      throw new CorralError('UNSUPPORTED', `corral's native addon could not be loaded: ${(e as Error).message}`, {
        hint: 'install the package for your platform (npm installs it automatically), or build from source with `npm install` in a checkout (needs cargo)',
      });
    }
  }
  return binding;
}

/** The caller's working directory and environment, read on the JS thread. */
export function callerContext(): CallerContext {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return { cwd: process.cwd(), env };
}

/** Calls into the binding, turning its errors into `CorralError`s. */
export function call<T>(f: (b: Binding) => T): T {
  const b = load();
  try {
    return f(b);
  } catch (e) {
    throw fromNative(e);
  }
}

export async function callAsync<T>(f: (b: Binding) => Promise<T>): Promise<T> {
  const b = load();
  try {
    return await f(b);
  } catch (e) {
    throw fromNative(e);
  }
}

/** JSON of a policy for the native normaliser. Non-objects are left for it to reject with a field. */
export function policyJson(policy: unknown): string {
  if (policy === undefined || policy === null) return '{}';
  if (typeof policy !== 'object' || Array.isArray(policy)) {
    throw new CorralError('POLICY_INVALID', `the policy must be an object, got ${Array.isArray(policy) ? 'an array' : typeof policy}`, { field: 'policy' });
  }
  try {
    return JSON.stringify(policy);
  } catch (e) {
    throw new CorralError('POLICY_INVALID', `the policy cannot be serialised: ${(e as Error).message}`, { field: 'policy' });
  }
}

export function checkArgv(argv: unknown): string[] {
  if (!Array.isArray(argv) || argv.length === 0) {
    throw new CorralError('POLICY_INVALID', 'the command must be a non-empty array of strings', { field: 'argv' });
  }
  argv.forEach((a, i) => {
    if (typeof a !== 'string') throw new CorralError('POLICY_INVALID', `expected a string, got ${typeof a}`, { field: `argv[${i}]` });
  });
  return argv as string[];
}
