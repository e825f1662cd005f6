// Runs in: the Node process. Warm pools: sandboxes prepared ahead of time, one command each.
import { checkArgv, inputBytes, optionsObject, policyJson } from './arguments';
import { CorralError } from './errors';
import { call, callAsync, callerContext, type NativePool } from './native';
import type { Policy } from './policy';
import { withDefaultOutputCap } from './output';
import { toResult, type RunResult } from './result';

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

  constructor(policy: Policy = {}, options?: PoolOptions) {
    const opts = optionsObject<PoolOptions>(options);
    const size = opts.size ?? 4;
    const maxSize = opts.maxSize ?? Math.max(size * 2, 1);
    if (!Number.isInteger(size) || size < 0) throw new CorralError('POLICY_INVALID', 'must be a whole number ≥ 0', { field: 'size' });
    if (!Number.isInteger(maxSize) || maxSize < Math.max(size, 1)) throw new CorralError('POLICY_INVALID', 'must be a whole number ≥ size and ≥ 1', { field: 'maxSize' });
    const json = policyJson(withDefaultOutputCap(policy));
    const idleTimeout = opts.idleTimeout;
    this.native = call((b) => new b.NativePool(json, callerContext(), { size, maxSize, ...(idleTimeout === undefined ? {} : { idleTimeout }) }));
  }

  /** Runs `argv` in a warm sandbox; resolves like `run()`. */
  run(argv: string[], options?: PoolRunOptions & { encoding?: 'utf8' }): Promise<RunResult<string>>;
  run(argv: string[], options: PoolRunOptions & { encoding: 'buffer' }): Promise<RunResult<Buffer>>;
  async run(argv: string[], options?: PoolRunOptions): Promise<RunResult<string | Buffer>> {
    const opts = optionsObject<PoolRunOptions>(options);
    const cmd = checkArgv(argv);
    const stdin = inputBytes(opts.input);
    const out = await callAsync(() => this.native.run({ argv: cmd, env: opts.env, cwd: opts.cwd, stdin }));
    return toResult(cmd, out, opts.encoding ?? 'utf8');
  }

  stats(): PoolStats {
    return this.native.stats() as PoolStats;
  }

  /** Kills every ready sandbox and stops refilling; resolves once they are gone. */
  close(): Promise<void> {
    return callAsync(() => this.native.close());
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
