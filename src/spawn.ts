// Runs in: the Node process. `spawn()`: a command in its own sandbox, streamed live.
import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import { PassThrough, Readable, Writable } from 'node:stream';
import { abortSignal, checkArgv, optionsObject, policyJson } from './arguments';
import { CorralError } from './errors';
import { call, callAsync, callerContext, type NativeHandle } from './native';
import type { Policy } from './policy';
import { signalNumber, toResult, type RunResult } from './result';

/** Options for `spawn()`. */
export interface SpawnOptions {
  /** `'pipe'` (default): `proc.stdin` is writable. `'ignore'`: the command reads /dev/null. */
  stdin?: 'pipe' | 'ignore';
  /** Kills the sandbox when aborted; `wait()` then rejects with `CorralError` code `ABORTED`. */
  signal?: AbortSignal;
  /**
   * Give the command a terminal of the sandbox's own (its controlling terminal, from the
   * sandbox's devpts): `stdout` then carries everything the terminal shows, `stdin` is what
   * is typed, and `resize()` changes its size. The host's terminal is never the sandbox's.
   */
  pty?: { cols: number; rows: number };
}

/**
 * A command running in its own sandbox. Its output arrives on `stdout` / `stderr` as it is
 * produced (Node `Readable`s, also async-iterable); write to `stdin`; `wait()` resolves
 * with the statistics when every process of the sandbox is gone.
 *
 * Events: `'spawn'` once the sandbox exists (`pid` is set), `'exit'` with the result,
 * `'error'` if the sandbox could not be created.
 */
export class SandboxProcess extends EventEmitter {
  readonly command: string[];
  /** The command's output, streamed live. */
  readonly stdout: Readable = new PassThrough();
  readonly stderr: Readable = new PassThrough();
  /** The command's input; `null` with `stdin: 'ignore'`. End it to send EOF. */
  readonly stdin: Writable | null;
  /** Pid of the sandbox's init (in this process's pid namespace), once started. */
  pid?: number;
  private handle?: NativeHandle;
  private readonly started: Promise<NativeHandle>;
  private readonly done: Promise<RunResult<''>>;
  private aborted = false;
  private pendingKill?: number;
  private terminalFd?: number;

  constructor(policy: Policy, argv: string[], options?: SpawnOptions) {
    super();
    const opts = optionsObject<SpawnOptions>(options);
    this.command = checkArgv(argv);
    const json = policyJson(policy);
    const signal = abortSignal(opts.signal);
    const withStdin = opts.pty !== undefined || (opts.stdin ?? 'pipe') === 'pipe';
    this.stdin = withStdin ? new PassThrough() : null;
    const ctx = callerContext();
    const pty = opts.pty;
    this.started = callAsync(async (b) => b.spawn(json, this.command, ctx, withStdin, pty ?? null)).then((s) => {
      this.pid = s.pid;
      this.handle = s.handle;
      if (s.terminal != null) {
        // stdout and stdin are pipes relayed to the terminal natively; the master itself
        // is kept for resize().
        this.terminalFd = s.terminal;
        (this.stderr as PassThrough).end();
      }
      if (s.stdout != null) new Socket({ fd: s.stdout, readable: true, writable: false }).pipe(this.stdout as PassThrough);
      if (s.stderr != null) new Socket({ fd: s.stderr, readable: true, writable: false }).pipe(this.stderr as PassThrough);
      if (this.stdin && s.stdin != null) {
        const sink = new Socket({ fd: s.stdin, readable: false, writable: true });
        // A command that exits without reading is not an error of ours.
        sink.on('error', () => undefined);
        (this.stdin as PassThrough).pipe(sink);
      }
      if (this.pendingKill !== undefined) s.handle.kill(this.pendingKill);
      this.emit('spawn');
      return s.handle;
    });
    this.done = this.started
      .then((h) => callAsync(() => h.wait()))
      .then((out) => {
        if (this.aborted) throw new CorralError('ABORTED', 'the run was aborted');
        const r = { ...toResult(this.command, out, 'utf8'), stdout: '', stderr: '' } as RunResult<''>;
        this.emit('exit', r);
        return r;
      });
    this.done.catch((e) => {
      (this.stdout as PassThrough).end();
      (this.stderr as PassThrough).end();
      if (this.listenerCount('error') > 0) this.emit('error', e);
    });
    if (signal) {
      const onAbort = () => {
        this.aborted = true;
        this.kill('SIGKILL');
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      this.done.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => undefined);
    }
  }

  /**
   * Sends a signal to the command's process group (default SIGTERM); SIGKILL ends the whole
   * sandbox at once. Returns false if the sandbox is already gone.
   */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    const n = signalNumber(signal);
    if (!this.handle) {
      this.pendingKill = n;
      return true;
    }
    try {
      call(() => this.handle!.kill(n));
      return true;
    } catch {
      return false;
    }
  }

  /** Stops every process of the sandbox (cgroup freezer, else SIGSTOP to the whole tree). */
  async pause(): Promise<void> {
    const h = await this.started;
    await callAsync(() => h.freeze(true));
  }

  /** Continues a paused sandbox. */
  async resume(): Promise<void> {
    const h = await this.started;
    await callAsync(() => h.freeze(false));
  }

  /** Resizes the command's terminal (spawned with `pty`); the command gets SIGWINCH. */
  async resize(cols: number, rows: number): Promise<void> {
    await this.started;
    if (this.terminalFd === undefined) throw new CorralError('POLICY_INVALID', 'this sandbox has no terminal (spawn it with pty)', { field: 'pty' });
    const fd = this.terminalFd;
    call((b) => b.resizeTerminal(fd, { cols, rows }));
  }

  /** Resolves when every process of the sandbox is gone. Output was streamed, so `stdout` and `stderr` are empty here. */
  wait(): Promise<RunResult<''>> {
    return this.done;
  }
}

/**
 * Starts `argv` in a new sandbox built from `policy` and returns at once; output streams as
 * it is produced.
 *
 * @example
 * const p = spawn({ timeout: '1m' }, ['npm', 'test']);
 * for await (const chunk of p.stdout) process.stdout.write(chunk);
 * const { exitCode } = await p.wait();
 */
export function spawn(policy: Policy, argv: string[], options?: SpawnOptions): SandboxProcess {
  return new SandboxProcess(policy, argv, options);
}
