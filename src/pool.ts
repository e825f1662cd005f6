// Runs in: the Node process. Warm pools: sandboxes prepared ahead of time, one command
// each, with a bounded queue in front so that a burst waits for warm sandboxes instead of
// creating cold ones.
import { abortSignal, checkArgv, inputBytes, optionsObject, policyJson } from './arguments';
import { abortError, CorralError } from './errors';
import { call, callAsync, callerContext, type NativePool } from './native';
import { withDefaultOutputCap } from './output';
import type { Duration, Policy } from './policy';
import { present, settle, toResult, type Output, type OutputEncoding, type RunResult } from './result';

/** Options for `new Pool()`. */
export interface PoolOptions {
  /** Ready sandboxes to keep. @default 4 */
  size?: number;
  /** Most sandboxes ready or being prepared at once. @default size * 2 */
  maxSize?: number;
  /** Kill ready sandboxes unused this long (ms or `'30s'`); the pool refills on the next use. */
  idleTimeout?: Duration;
  /**
   * Most commands running at once; more wait in a queue for a sandbox to come free.
   * @default maxSize
   */
  concurrency?: number;
  /** Most commands waiting in the queue; past it `run()` rejects with `QUEUE_FULL`. @default 4096 */
  maxQueue?: number;
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
  /** Commands that waited for a sandbox already being prepared. */
  waits: number;
  /** Commands that had a sandbox prepared for them on the spot. */
  misses: number;
  /** Commands waiting in the queue now (`concurrency` were running). */
  queued: number;
  /** Commands that had to wait in the queue, since the pool started. */
  queuedTotal: number;
  /** Mean time from `run()` to the command having been handed over, µs (queueing not counted). */
  meanAcquireUs: number;
}

/** Per-command options for a pool. */
export interface PoolRunOptions {
  /** Added to (or overriding) the policy's environment. */
  env?: Record<string, string>;
  /** Working directory inside the sandbox (default: the policy's). */
  cwd?: string;
  /** Data for the command's stdin (default: /dev/null). */
  input?: string | Buffer | Uint8Array;
  /** `'buffer'` keeps Buffers; any `BufferEncoding` decodes. @default 'utf8' */
  encoding?: OutputEncoding;
  /** Split captured output into lines. @default false */
  lines?: boolean;
  /** Throw a `CommandFailedError` when the command fails. @default false */
  reject?: boolean;
  /** Leaves the queue, or kills the sandbox, when aborted; rejects with `ABORTED`. */
  signal?: AbortSignal;
}

/**
 * A warm pool: sandboxes for one policy prepared ahead of time (namespaces, mount view,
 * cgroup, and the command's process already restricted), so `run()` costs little more
 * than a plain fork+exec. Each sandbox runs one command and is never reused; the pool
 * refills in the background. At most `concurrency` commands run at once; the rest queue.
 * Call `close()` when done, or let `await using` do it.
 *
 * @example
 * await using pool = new Pool({ timeout: '10s' }, { size: 8 });
 * const r = await pool.run(['python3', '-c', 'print(6*7)']);
 */
export class Pool {
  private readonly native: NativePool;
  private readonly concurrency: number;
  private readonly maxQueue: number;
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private queuedTotal = 0;
  private nextTicket = 1;
  private closed = false;

  /**
   * @throws {CorralError} `POLICY_INVALID` for a bad policy or option (field `size`,
   * `maxSize`, `idleTimeout`, `concurrency`, `maxQueue`); `UNSUPPORTED` where sandboxes
   * cannot be created.
   */
  constructor(policy: Policy = {}, options?: PoolOptions) {
    const opts = optionsObject<PoolOptions>(options);
    const size = opts.size ?? 4;
    const maxSize = opts.maxSize ?? Math.max(size * 2, 1);
    const whole = (v: unknown, min: number, field: string) => {
      if (!Number.isInteger(v) || (v as number) < min) throw new CorralError('POLICY_INVALID', `must be a whole number ≥ ${min}`, { field });
      return v as number;
    };
    whole(size, 0, 'size');
    if (whole(maxSize, 1, 'maxSize') < size) throw new CorralError('POLICY_INVALID', 'must be at least size', { field: 'maxSize' });
    this.concurrency = whole(opts.concurrency ?? maxSize, 1, 'concurrency');
    this.maxQueue = whole(opts.maxQueue ?? 4096, 0, 'maxQueue');
    const json = policyJson(withDefaultOutputCap(policy));
    const idleTimeout = opts.idleTimeout;
    this.native = call((b) => new b.NativePool(json, callerContext(), { size, maxSize, ...(idleTimeout === undefined ? {} : { idleTimeout }) }));
  }

  /**
   * Runs `argv` in a warm sandbox; resolves like `run()`.
   * @throws {CorralError} as `run()`; `QUEUE_FULL` when `maxQueue` commands already wait;
   * `INVALID_STATE` after `close()`.
   */
  run(argv: readonly string[], options: PoolRunOptions & { encoding: 'buffer' }): Promise<RunResult<Buffer>>;
  run(argv: readonly string[], options: PoolRunOptions & { lines: true }): Promise<RunResult<string[]>>;
  run(argv: readonly string[], options?: PoolRunOptions & { encoding?: BufferEncoding; lines?: false }): Promise<RunResult<string>>;
  run(argv: readonly string[], options?: PoolRunOptions): Promise<RunResult<Output>>;
  async run(argv: readonly string[], options?: PoolRunOptions): Promise<RunResult<Output>> {
    const opts = optionsObject<PoolRunOptions>(options);
    const cmd = checkArgv(argv);
    const stdin = inputBytes(opts.input);
    const signal = abortSignal(opts.signal);
    const how = { encoding: opts.encoding ?? 'utf8', lines: opts.lines === true };
    if (how.encoding !== 'buffer' && !Buffer.isEncoding(how.encoding)) throw new CorralError('POLICY_INVALID', `not an encoding: ${String(how.encoding)}`, { field: 'encoding' });
    if (how.lines && how.encoding === 'buffer') throw new CorralError('POLICY_INVALID', "lines need a text encoding, not 'buffer'", { field: 'lines' });
    await this.slot(signal);
    const ticket = this.nextTicket++ % 0xffff_fff0;
    const onAbort = () => this.native.cancel(ticket);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal?.aborted) throw abortError(signal);
      const out = await callAsync(() => this.native.run({ argv: cmd, env: opts.env, cwd: opts.cwd, stdin, ticket }));
      if (signal?.aborted) throw abortError(signal);
      return settle(present(toResult(cmd, out), how), opts.reject);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.release();
    }
  }

  /** Waits for one of the `concurrency` places to run a command. */
  private slot(signal: AbortSignal | undefined): Promise<void> {
    if (this.closed) return Promise.reject(new CorralError('INVALID_STATE', 'the pool is closed'));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.running < this.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(new CorralError('QUEUE_FULL', `${this.queue.length} commands already wait for this pool`, { hint: 'raise PoolOptions.maxQueue or concurrency, or wait for earlier commands' }));
    }
    this.queuedTotal++;
    return new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', leave);
        if (this.closed) return reject(new CorralError('INVALID_STATE', 'the pool is closed'));
        this.running++;
        resolve();
      };
      const leave = () => {
        const i = this.queue.indexOf(go);
        if (i >= 0) this.queue.splice(i, 1);
        reject(abortError(signal!));
      };
      signal?.addEventListener('abort', leave, { once: true });
      this.queue.push(go);
    });
  }

  private release(): void {
    this.running--;
    this.queue.shift()?.();
  }

  /** What the pool has done so far. */
  stats(): PoolStats {
    const s = this.native.stats() as Omit<PoolStats, 'queued' | 'queuedTotal'>;
    return { ...s, queued: this.queue.length, queuedTotal: this.queuedTotal };
  }

  /**
   * Kills every ready sandbox and every command still running (their `run()` resolves as
   * killed by SIGKILL), turns away queued commands and stops refilling; resolves once they
   * are gone.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const go of this.queue.splice(0)) go();
    await callAsync(() => this.native.close());
  }

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Runs `n` copies of `argv` in `n` sandboxes of one policy, prepared together; each gets
 * `CLONE_ID=0..n-1` in its environment. For sharded tests and map jobs.
 * @throws {CorralError} `POLICY_INVALID` (field `n`) for a count below 1; as `run()` otherwise.
 */
export async function forkExec(policy: Policy, argv: readonly string[], n: number, options: { signal?: AbortSignal } = {}): Promise<RunResult<string>[]> {
  if (!Number.isInteger(n) || n < 1) throw new CorralError('POLICY_INVALID', 'must be a whole number ≥ 1', { field: 'n' });
  const signal = abortSignal(options.signal);
  const pool = new Pool(policy, { size: n, maxSize: n });
  try {
    return await Promise.all(Array.from({ length: n }, (_, i) => pool.run(argv, { env: { CLONE_ID: String(i) }, signal })));
  } finally {
    await pool.close();
  }
}
