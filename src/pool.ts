import { CorralError } from './errors';
import { callAsync, callerContext, checkArgv, NativeRunOutput, policyJson } from './native';
import type { Policy } from './policy';
import type { RunResult } from './result';
import { toResult } from './run';

/** Options for `new Pool()`. */
export interface PoolOptions {
  /** Ready sandboxes to keep (default 4). */
  size?: number;
  /** Most sandboxes ready or being prepared at once (default `size * 2`). */
  maxSize?: number;
  /** Kill ready sandboxes unused this long (ms or `'30s'`); the pool refills on the next use. */
  idleTimeout?: number | string;
}

/** What a pool has done so far. */
export interface PoolStats {
  /** Sandboxes ready to take a command. */
  ready: number;
  /** Being prepared in the background. */
  preparing: number;
  /** Running a command now. */
  inUse: number;
  /** Prepared since the pool started. */
  created: number;
  /** Commands that found a ready sandbox. */
  hits: number;
  /** Commands that had to wait for one to be prepared. */
  misses: number;
  /** Mean time from `run()` to the command having been handed over, µs. */
  meanAcquireUs: number;
}

/** Per-command options for a pool. */
export interface PoolRunOptions {
  /** Added to (or overriding) the policy's environment. */
  env?: Record<string, string>;
  /** Working directory inside the sandbox (default: the policy's). */
  cwd?: string;
  input?: string | Buffer | Uint8Array;
  encoding?: 'utf8' | 'buffer';
}

interface NativePool {
  run(req: { argv: string[]; env?: Record<string, string>; cwd?: string; stdin?: Buffer }): Promise<NativeRunOutput>;
  stats(): PoolStats;
  close(): Promise<void>;
}

function duration(v: number | string | undefined): number | undefined {
  if (v === undefined || typeof v === 'number') return v;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(v.trim());
  if (!m) throw new CorralError('POLICY_INVALID', `not a duration: ${JSON.stringify(v)}`, { field: 'idleTimeout' });
  return Math.round(Number(m[1]) * ({ ms: 1, s: 1000, m: 60000 } as Record<string, number>)[m[2] ?? 'ms']);
}

/**
 * A warm pool: sandboxes for one policy prepared ahead of time (namespaces, mount view,
 * cgroup, and the command's process already restricted), so `run()` costs little more
 * than a plain fork+exec. Each sandbox runs one command and is never reused; the pool
 * refills in the background. Call `close()` when done.
 *
 * @example
 * const pool = new Pool({ timeout: '10s' }, { size: 8 });
 * const r = await pool.run(['python3', '-c', 'print(6*7)']);
 * await pool.close();
 */
export class Pool {
  private readonly native: NativePool;

  constructor(policy: Policy = {}, options: PoolOptions = {}) {
    const size = options.size ?? 4;
    const maxSize = options.maxSize ?? Math.max(size * 2, 1);
    if (!Number.isInteger(size) || size < 0) throw new CorralError('POLICY_INVALID', 'must be a whole number ≥ 0', { field: 'size' });
    if (!Number.isInteger(maxSize) || maxSize < Math.max(size, 1)) throw new CorralError('POLICY_INVALID', 'must be a whole number ≥ size and ≥ 1', { field: 'maxSize' });
    const json = policyJson(policy);
    const idle = duration(options.idleTimeout);
    const binding = require('../binding.cjs') as { NativePool: new (j: string, c: unknown, o: unknown) => NativePool };
    this.native = callSync(() => new binding.NativePool(json, callerContext(), { size, maxSize, ...(idle === undefined ? {} : { idleTimeoutMs: idle }) }));
  }

  /** Runs `argv` in a warm sandbox; resolves like `run()`. */
  run(argv: string[], options?: PoolRunOptions & { encoding?: 'utf8' }): Promise<RunResult<string>>;
  run(argv: string[], options: PoolRunOptions & { encoding: 'buffer' }): Promise<RunResult<Buffer>>;
  async run(argv: string[], options: PoolRunOptions = {}): Promise<RunResult<string | Buffer>> {
    const cmd = checkArgv(argv);
    const stdin = options.input === undefined ? undefined : Buffer.from(options.input as Uint8Array | string);
    const out = await callAsync(() => this.native.run({ argv: cmd, env: options.env, cwd: options.cwd, stdin }));
    const decode: (b: Buffer) => string | Buffer = options.encoding === 'buffer' ? (b) => b : (b) => b.toString('utf8');
    return toResult(cmd, out, decode);
  }

  stats(): PoolStats {
    return this.native.stats();
  }

  /** Kills every ready sandbox and stops refilling; resolves once they are gone. */
  close(): Promise<void> {
    return callAsync(() => this.native.close());
  }
}

function callSync<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    // Same conversion as every other native call.
    const { fromNative } = require('./errors') as typeof import('./errors');
    throw fromNative(e);
  }
}

/**
 * Runs `n` copies of `argv` in `n` sandboxes of one policy, prepared together; each gets
 * `CLONE_ID=0..n-1` in its environment. For sharded tests and map jobs.
 */
export async function forkExec(policy: Policy, argv: string[], n: number): Promise<RunResult<string>[]> {
  if (!Number.isInteger(n) || n < 1) throw new CorralError('POLICY_INVALID', 'must be a whole number ≥ 1', { field: 'n' });
  const pool = new Pool(policy, { size: n, maxSize: n });
  try {
    return await Promise.all(Array.from({ length: n }, (_, i) => pool.run(argv, { env: { CLONE_ID: String(i) } })));
  } finally {
    await pool.close();
  }
}
