import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
// Runs in: the Node process. Copy-on-write fork: templates, their clones, and reduce.
import { abortSignal, checkArgv, policyJson } from './arguments';
import { withDefaultOutputCap } from './output';
import { abortError, CorralError } from './errors';
import { callAsync, callerContext, type NativeClone, type NativeCloneHandle, type NativeTemplate } from './native';
import type { Policy } from './policy';
import { present, signalName, toResult, type RunResult } from './result';
import { run } from './run';
import { signalNumber } from './spawn';

/**
 * Directory holding `corral_fork.py`, the template side of the fork protocol for Python.
 * `template()` puts it on the template's `PYTHONPATH` and makes it readable in the sandbox,
 * so a Python template can simply `import corral_fork`.
 */
export const pythonHelperDir: string = join(__dirname, '..', 'python');

/** How a clone ended. */
export interface CloneExit {
  cloneId: number;
  /** Exit code, or `null` when a signal killed it. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

/** A clone's exit plus everything it printed. */
export interface CloneOutput extends CloneExit {
  stdout: string;
  stderr: string;
}

/**
 * One clone of a template: a process forked from the initialised template, sharing its
 * memory copy-on-write, inside the template's sandbox. Its output streams on `stdout` /
 * `stderr`; its stdin is /dev/null.
 */
export class Clone {
  /** Its `CLONE_ID` (0..n-1 within one `fork(n)`). */
  readonly id: number;
  /** Pid inside the template's sandbox. */
  readonly pid: number;
  readonly stdout: Readable = new PassThrough();
  readonly stderr: Readable = new PassThrough();
  /** The template's policy (the default for `reduce()`). */
  readonly policy: Policy;
  private readonly handle: NativeCloneHandle;
  private readonly exit: Promise<CloneExit>;

  /** @internal */
  constructor(native: NativeClone, policy: Policy) {
    this.id = native.cloneId;
    this.pid = native.pid;
    this.policy = policy;
    this.handle = native.handle;
    for (const [fd, stream] of [
      [native.stdout, this.stdout],
      [native.stderr, this.stderr],
    ] as const) {
      if (fd == null) {
        (stream as PassThrough).end();
        continue;
      }
      // The addon hands over only the read ends of pipes; still, a stream that fails ends
      // this clone's stream with the error rather than reaching the process unhandled.
      let source: Socket;
      try {
        source = new Socket({ fd, readable: true, writable: false });
      } catch (e) {
        closeSync(fd);
        (stream as PassThrough).destroy(e as Error);
        continue;
      }
      source.on('error', (e) => (stream as PassThrough).destroy(e));
      source.pipe(stream as PassThrough);
    }
    this.exit = callAsync(() => native.handle.wait()).then((e) => ({
      cloneId: this.id,
      exitCode: e.code ?? null,
      signal: e.signal == null ? null : signalName(e.signal),
    }));
  }

  /** Resolves when the clone has exited (may be called any number of times). */
  wait(): Promise<CloneExit> {
    return this.exit;
  }

  /** Waits for the clone and collects its output. Do not also read `stdout` / `stderr` yourself. */
  async output(): Promise<CloneOutput> {
    const [stdout, stderr, exit] = await Promise.all([collect(this.stdout), collect(this.stderr), this.exit]);
    return { ...exit, stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8') };
  }

  /** Sends a signal to the clone (default SIGTERM). */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): Promise<void> {
    const n = signalNumber(signal);
    return callAsync(() => this.handle.signal(n));
  }

  /** Stops the clone (SIGSTOP). */
  pause(): Promise<void> {
    return this.kill('SIGSTOP');
  }

  /** Continues a paused clone (SIGCONT). */
  resume(): Promise<void> {
    return this.kill('SIGCONT');
  }

  /** Kills the clone if it still runs and waits for it (for `await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill('SIGKILL').catch(() => undefined);
    await this.exit.catch(() => undefined);
  }
}

/**
 * A template: a sandboxed command that initialised once and forks clones on request. See
 * `template()`.
 */
export class Template {
  readonly command: string[];
  readonly policy: Policy;
  private readonly native: NativeTemplate;

  /** @internal */
  constructor(native: NativeTemplate, command: string[], policy: Policy) {
    this.native = native;
    this.command = command;
    this.policy = policy;
  }

  /** Pid of the template sandbox's init, in this process's pid namespace. */
  get pid(): number {
    return this.native.pid;
  }

  /**
   * Forks `n` clones with `CLONE_ID` 0..n-1; resolves once all of them exist. Aborting
   * `signal` kills them (before they exist: as soon as they do, and rejects with `ABORTED`).
   * @throws {CorralError} `POLICY_INVALID` (field `n`) for a count below 1; `ABORTED`.
   */
  async fork(n: number, options: { signal?: AbortSignal } = {}): Promise<Clone[]> {
    if (!Number.isInteger(n) || n < 1) throw new CorralError('POLICY_INVALID', 'must be a whole number ≥ 1', { field: 'n' });
    const signal = abortSignal(options.signal);
    if (signal?.aborted) throw abortError(signal);
    const clones = (await callAsync(() => this.native.fork(n))).map((c) => new Clone(c, this.policy));
    if (signal) {
      const killAll = () => clones.forEach((c) => void c.kill('SIGKILL').catch(() => undefined));
      if (signal.aborted) {
        killAll();
        throw abortError(signal);
      }
      signal.addEventListener('abort', killAll, { once: true });
      void Promise.all(clones.map((c) => c.wait().catch(() => undefined))).then(() => signal.removeEventListener('abort', killAll));
    }
    return clones;
  }

  /**
   * Tells the template to stop serving and waits for its sandbox to end; clones still
   * running end with it. Resolves with the template's own result (its output included).
   */
  async close(): Promise<RunResult<string>> {
    this.closing ??= callAsync(() => this.native.close()).then((out) => present(toResult(this.command, out), { encoding: 'utf8', lines: false }) as RunResult<string>);
    return this.closing;
  }

  private closing?: Promise<RunResult<string>>;

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close().catch(() => undefined);
  }
}

/**
 * Starts `argv` in a sandbox as a copy-on-write template and resolves once it has
 * initialised and said it is ready. The template speaks the fork protocol on the
 * descriptor named by `CORRAL_FORK_FD` (docs/fork-protocol.md); for Python,
 * `import corral_fork` and call `corral_fork.serve()` (the module is put on its path).
 *
 * @example
 * const t = await template({ fs: { read: ['./model'] } }, ['python3', 'score.py']);
 * const clones = await t.fork(8);
 * const total = await reduce(['python3', '-c', 'import sys; print(sum(map(int, sys.stdin)))'], clones);
 * await t.close();
 */
export async function template(policy: Policy, argv: readonly string[], options: { signal?: AbortSignal } = {}): Promise<Template> {
  const cmd = checkArgv(argv);
  const signal = abortSignal(options.signal);
  if (signal?.aborted) throw abortError(signal);
  const withHelper = withPythonHelper(policy ?? {});
  const json = policyJson(withDefaultOutputCap(withHelper));
  const native = await callAsync((b) => b.startTemplate(json, cmd, callerContext()));
  const t = new Template(native, cmd, policy ?? {});
  if (signal) {
    // The signal covers the template's life: aborting closes it (and so ends its clones).
    const stop = () => void t.close().catch(() => undefined);
    if (signal.aborted) {
      await t.close().catch(() => undefined);
      throw abortError(signal);
    }
    signal.addEventListener('abort', stop, { once: true });
  }
  return t;
}

/** Options for `reduce()`. */
export interface ReduceOptions {
  signal?: AbortSignal;
  /**
   * How the clones' outputs are put together on the reducer's stdin, in `CLONE_ID` order.
   * `'lines'`: each clone's output, ended with a newline where it lacks one, so that one
   * clone's unfinished last line (a clone killed mid-line) never runs into the next
   * clone's first. `'json'`: one JSON object per line and clone, `{ cloneId, exitCode,
   * signal, stdout }` (stdout decoded as UTF-8), so the reducer sees how each clone ended.
   * `'raw'`: the bytes as printed, back to back.
   * @default 'lines'
   */
  framing?: 'lines' | 'json' | 'raw';
  /**
   * Reject with `COMMAND_FAILED`, without running the reducer, when a clone did not exit
   * with 0 (its error's message names the clones that failed). @default false
   */
  rejectFailedClones?: boolean;
}

/** What `reduce()` resolves with: the reducer's result, and how each clone ended. */
export type ReduceResult = RunResult<string> & { clones: CloneExit[] };

/**
 * Waits for every clone and runs the reducer `argv` with their stdout on its stdin, in
 * `CLONE_ID` order and framed as `options.framing` says. The reducer runs in a sandbox of
 * its own, with `policy` (default: the clones' template's). Reads the clones' stdout: do
 * not consume it yourself. The result's `clones` says how each clone ended.
 * @throws {CorralError} `COMMAND_FAILED` with `rejectFailedClones` when a clone failed;
 * `ABORTED`; as `run()` otherwise.
 */
export async function reduce(argv: readonly string[], clones: readonly Clone[], policy?: Policy, options: ReduceOptions = {}): Promise<ReduceResult> {
  const cmd = checkArgv(argv);
  if (!Array.isArray(clones)) throw new CorralError('POLICY_INVALID', 'expected an array of clones', { field: 'clones' });
  const framing = options.framing ?? 'lines';
  if (!['lines', 'json', 'raw'].includes(framing)) throw new CorralError('POLICY_INVALID', `must be 'lines', 'json' or 'raw', not ${String(framing)}`, { field: 'framing' });
  const signal = abortSignal(options.signal);
  // Aborting while the clones still run kills them; the reducer itself takes the signal.
  const killAll = () => clones.forEach((c) => void c.kill('SIGKILL').catch(() => undefined));
  if (signal?.aborted) killAll();
  signal?.addEventListener('abort', killAll, { once: true });
  try {
    const outputs = await Promise.all(clones.map(async (c) => ({ out: await collect(c.stdout), exit: await c.wait() })));
    if (signal?.aborted) throw abortError(signal);
    outputs.sort((a, b) => a.exit.cloneId - b.exit.cloneId);
    const exits = outputs.map((o) => o.exit);
    const failed = exits.filter((e) => e.exitCode !== 0);
    if (options.rejectFailedClones && failed.length > 0) {
      const how = failed.map((e) => `clone ${e.cloneId} ${e.signal ? `was killed by ${e.signal}` : `exited with ${e.exitCode}`}`).join(', ');
      throw new CorralError('COMMAND_FAILED', `${failed.length} of ${exits.length} clones failed (${how}); the reducer was not run`);
    }
    const framed = outputs.map(({ out, exit }) => {
      if (framing === 'json') return Buffer.from(JSON.stringify({ cloneId: exit.cloneId, exitCode: exit.exitCode, signal: exit.signal, stdout: out.toString('utf8') }) + '\n');
      if (framing === 'lines' && out.length > 0 && out[out.length - 1] !== 0x0a) return Buffer.concat([out, Buffer.from('\n')]);
      return out;
    });
    const result = await run(policy ?? clones[0]?.policy ?? {}, cmd, { input: Buffer.concat(framed), ...(signal ? { signal } : {}) });
    return Object.assign(result, { clones: exits });
  } finally {
    signal?.removeEventListener('abort', killAll);
  }
}

function collect(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

/** Where the Python module shows when a volume hides its own path (a name corral keeps for it). */
const pythonHelperTarget = '/.corral-python';

/**
 * The policy plus what makes `import corral_fork` work inside the sandbox: the module's
 * directory granted where it is, or, when a volume's target covers that path (and shows
 * another tree there), shown read-only at `/.corral-python`.
 */
function withPythonHelper(policy: Policy): Policy {
  if (typeof policy !== 'object' || policy === null || Array.isArray(policy)) return policy;
  const fs = policy.fs ?? {};
  const env = policy.env ?? {};
  const volumes = Array.isArray(fs.volumes) ? fs.volumes : [];
  const covers = (target: unknown) =>
    typeof target === 'string' && `${pythonHelperDir}/`.startsWith(`${target.replace(/\/+$/, '')}/`);
  const hidden = volumes.some((v) => covers(v?.target));
  const dir = hidden ? pythonHelperTarget : pythonHelperDir;
  const path = env.PYTHONPATH ? `${dir}:${env.PYTHONPATH}` : dir;
  const withModule = hidden
    ? { ...fs, volumes: [...volumes, { source: pythonHelperDir, target: dir, readOnly: true }] }
    : { ...fs, read: [...(fs.read ?? []), pythonHelperDir] };
  return { ...policy, fs: withModule, env: { ...env, PYTHONPATH: path } };
}
