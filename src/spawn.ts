// Runs in: the Node process. `spawn()`: a command in its own sandbox, its output streamed
// live (and collected too with `buffer: true`, which is how `run()` handles streams,
// `all` and cancellation).
import { EventEmitter } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { Socket } from 'node:net';
import { constants } from 'node:os';
import { PassThrough, Readable, Writable } from 'node:stream';
import { abortSignal, checkArgv, optionsObject, policyJson } from './arguments';
import { abortError, CorralError } from './errors';
import { call, callAsync, callerContext, type NativeHandle } from './native';
import { Capture, DEFAULT_MAX_OUTPUT_BYTES } from './output';
import { plan } from './plan';
import type { Policy } from './policy';
import { present, toResult, type Output, type OutputEncoding, type RunResult, type StdinOption, type StdoutOption } from './result';
import { describe } from './values';

/** Options for `spawn()`. */
export interface SpawnOptions {
  /**
   * `'pipe'`: `proc.stdin` is writable (end it to send EOF). `'ignore'`: /dev/null.
   * `'inherit'`: this process's stdin. A file descriptor, or a Readable, is streamed in.
   * @default 'pipe'
   */
  stdin?: StdinOption;
  /**
   * `'pipe'`: streamed on `proc.stdout`. `'inherit'`: this process's stdout. `'ignore'`:
   * dropped. A file descriptor, or a Writable (not ended by corral), receives it.
   * @default 'pipe'
   */
  stdout?: StdoutOption;
  /** As `stdout`, for stderr. @default 'pipe' */
  stderr?: StdoutOption;
  /** Kills the sandbox when aborted; `wait()` then rejects with code `ABORTED` (`cause`: the reason). */
  signal?: AbortSignal;
  /**
   * Give the command a terminal of the sandbox's own (its controlling terminal, from the
   * sandbox's devpts): `stdout` then carries everything the terminal shows, `stdin` is what
   * is typed, and `resize()` changes its size. The host's terminal is never the sandbox's.
   */
  pty?: { cols: number; rows: number };
  /**
   * Also collect the output, so that `wait()` returns it as `run()` does (each stream up to
   * `limits.maxOutputBytes`, by default 100 MiB). The streams still carry it.
   * @default false
   */
  buffer?: boolean;
  /** With `buffer`: how `wait()` returns the output. @default 'utf8' */
  encoding?: OutputEncoding;
  /** With `buffer`: split the output into lines. @default false */
  lines?: boolean;
  /** With `buffer`: also return `all`, stdout and stderr interleaved. @default false */
  all?: boolean;
}

/** The events of a `SandboxProcess`, with their arguments. */
export interface SandboxProcessEvents<Out extends Output = string> {
  /** The sandbox exists; `pid` is set. */
  spawn: [];
  /** Every process of the sandbox is gone. */
  exit: [result: RunResult<Out>];
  /** The sandbox could not be created, or the run was aborted. */
  error: [error: CorralError];
}

/** 15 for `SIGTERM`; numbers pass through. */
export function signalNumber(signal: NodeJS.Signals | number): number {
  if (typeof signal === 'number') return signal;
  const n = (constants.signals as Record<string, number>)[signal];
  if (n === undefined) throw new CorralError('POLICY_INVALID', `unknown signal ${signal}`, { field: 'signal' });
  return n;
}

const STREAM_CHOICES = ['pipe', 'inherit', 'ignore'];

function checkStdio(v: unknown, field: 'stdin' | 'stdout' | 'stderr'): StdinOption | StdoutOption | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string' && STREAM_CHOICES.includes(v)) return v as 'pipe';
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (field === 'stdin' ? v instanceof Readable : v instanceof Writable) return v as Readable & Writable;
  throw new CorralError('POLICY_INVALID', `expected 'pipe', 'inherit', 'ignore', a file descriptor or a ${field === 'stdin' ? 'Readable' : 'Writable'} stream, got ${describe(v)}`, { field });
}

/**
 * A command running in its own sandbox. Its output arrives on `stdout` / `stderr` as it is
 * produced (Node `Readable`s, also async-iterable); write to `stdin`; `wait()` resolves
 * with the statistics when every process of the sandbox is gone. `await using` kills a
 * sandbox still running when the scope ends.
 */
export class SandboxProcess<Out extends Output = string> extends EventEmitter<SandboxProcessEvents<Out>> {
  readonly command: string[];
  /** The command's output, streamed live (ended at once when `stdout` goes elsewhere). */
  readonly stdout: Readable = new PassThrough();
  /** The command's error output, as `stdout`. */
  readonly stderr: Readable = new PassThrough();
  /** The command's input with `stdin: 'pipe'`, else `null`. End it to send EOF. */
  readonly stdin: Writable | null;
  /** Pid of the sandbox's init (in this process's pid namespace), once started. */
  pid?: number;
  private handle?: NativeHandle;
  private readonly started: Promise<NativeHandle>;
  private readonly done: Promise<RunResult<Out>>;
  private aborted?: AbortSignal;
  private pendingKill?: number;
  private terminalFd?: number;
  private finished = false;
  /** Stops feeding stdin and closes our end of its pipe (once the sandbox is gone). */
  private stopFeeding?: () => void;

  /** Use `spawn()`. @throws {CorralError} `POLICY_INVALID` for a bad policy, command or option. */
  constructor(policy: Policy, argv: readonly string[], options?: SpawnOptions) {
    super();
    const opts = optionsObject<SpawnOptions>(options);
    this.command = checkArgv(argv);
    const json = policyJson(policy);
    const signal = abortSignal(opts.signal);
    const stdin = (checkStdio(opts.stdin, 'stdin') ?? 'pipe') as StdinOption;
    const stdout = (checkStdio(opts.stdout, 'stdout') ?? 'pipe') as StdoutOption;
    const stderr = (checkStdio(opts.stderr, 'stderr') ?? 'pipe') as StdoutOption;
    const encoding = opts.encoding ?? 'utf8';
    if (encoding !== 'buffer' && !Buffer.isEncoding(encoding)) throw new CorralError('POLICY_INVALID', `not an encoding: ${String(encoding)}`, { field: 'encoding' });
    if (opts.lines && encoding === 'buffer') throw new CorralError('POLICY_INVALID', "lines need a text encoding, not 'buffer'", { field: 'lines' });
    const buffer = opts.buffer === true;
    const cap = buffer ? (plan(policy).maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES) : 0;
    const captures = { stdout: new Capture(cap), stderr: new Capture(cap), all: opts.all && buffer ? new Capture(cap * 2) : undefined };

    const withStdin = opts.pty !== undefined || stdin !== 'ignore';
    this.stdin = opts.pty !== undefined || stdin === 'pipe' ? new PassThrough() : null;
    const ctx = callerContext();
    const pty = opts.pty;
    const ended: Promise<void>[] = [];
    this.started = callAsync((b) => b.spawn(json, this.command, ctx, withStdin, pty ?? null)).then((s) => {
      this.pid = s.pid;
      this.handle = s.handle;
      if (s.terminal != null) {
        // stdout and stdin are pipes relayed to the terminal natively; the master itself
        // is kept for resize().
        this.terminalFd = s.terminal;
      }
      if (s.stdin != null) this.feed(s.stdin, stdin);
      // Only what goes to a pipe is collected: output sent elsewhere is not the result's.
      ended.push(this.relay(s.stdout, stdout, this.stdout as PassThrough, process.stdout, buffer && stdout === 'pipe' ? captures.stdout : undefined, captures.all));
      ended.push(this.relay(s.stderr, stderr, this.stderr as PassThrough, process.stderr, buffer && stderr === 'pipe' ? captures.stderr : undefined, captures.all));
      if (this.pendingKill !== undefined) s.handle.kill(this.pendingKill);
      this.emit('spawn');
      return s.handle;
    });
    this.done = this.started
      .then((h) => callAsync(() => h.wait()))
      .then(async (out) => {
        await Promise.all(ended);
        if (this.aborted) throw abortError(this.aborted);
        const raw = toResult(this.command, out);
        const result = present(
          {
            ...raw,
            stdout: captures.stdout.buffer(),
            stderr: captures.stderr.buffer(),
            ...(captures.all ? { all: captures.all.buffer() } : {}),
            outputTruncated: raw.outputTruncated || captures.stdout.truncated || captures.stderr.truncated,
          },
          { encoding, lines: opts.lines === true },
        ) as RunResult<Out>;
        this.emit('exit', result);
        return result;
      })
      .finally(() => {
        this.finished = true;
        // Nobody reads the pipe any more: close our end now rather than when the caller
        // ends `stdin` (which it may never do).
        this.stopFeeding?.();
      });
    this.done.catch((e: CorralError) => {
      (this.stdout as PassThrough).end();
      (this.stderr as PassThrough).end();
      if (this.listenerCount('error') > 0) this.emit('error', e);
    });
    if (signal) {
      const onAbort = () => {
        this.aborted = signal;
        this.kill('SIGKILL');
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      this.done.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => undefined);
    }
  }

  /** Streams the command's input from where `stdin` says into the pipe `fd`. */
  private feed(fd: number, from: StdinOption): void {
    const sink = new Socket({ fd, readable: false, writable: true });
    // A command that exits without reading is not an error of ours.
    sink.on('error', () => undefined);
    const source = from === 'pipe' ? (this.stdin as PassThrough) : from === 'inherit' ? process.stdin : typeof from === 'number' ? createReadStream('', { fd: from, autoClose: false }) : (from as Readable);
    if (source === process.stdin) process.stdin.on('error', () => undefined);
    source.pipe(sink);
    this.stopFeeding = () => {
      source.unpipe(sink);
      sink.destroy();
      // What is written to `stdin` from now on goes nowhere, as to a closed pipe's reader.
      if (source === this.stdin) source.resume();
      else if (typeof from === 'number') source.destroy();
    };
  }

  /**
   * Relays the command's output pipe `fd` to where `to` says (the public stream for
   * `'pipe'`), collecting it into `capture` (and `all`) on the way; resolves at its end.
   */
  private relay(fd: number | null | undefined, to: StdoutOption, pub: PassThrough, inherit: Writable, capture?: Capture, all?: Capture): Promise<void> {
    if (fd == null) {
      pub.end();
      return Promise.resolve();
    }
    const src = new Socket({ fd, readable: true, writable: false });
    const dest: Writable | null = to === 'pipe' ? pub : to === 'inherit' ? inherit : to === 'ignore' ? null : typeof to === 'number' ? createWriteStream('', { fd: to, autoClose: false }) : (to as Writable);
    if (to !== 'pipe') pub.end();
    return new Promise<void>((resolve) => {
      src.on('end', resolve);
      src.on('close', resolve);
      src.on('error', () => resolve());
      if (!capture) {
        if (dest) src.pipe(dest, { end: dest === pub });
        else src.resume();
        return;
      }
      // Collecting: read as fast as the command writes (the capture is bounded), and give
      // the destination what it takes; the public stream buffers what nobody reads yet.
      src.on('data', (chunk: Buffer) => {
        capture.push(chunk);
        all?.push(chunk);
        if (dest && !dest.write(chunk) && dest !== pub) {
          src.pause();
          dest.once('drain', () => src.resume());
        }
      });
      src.on('end', () => {
        if (dest === pub) pub.end();
      });
    });
  }

  /**
   * Sends a signal to the command's process group (default SIGTERM); SIGKILL ends the whole
   * sandbox at once. Returns false if the sandbox is already gone.
   * @throws {CorralError} `POLICY_INVALID` for an unknown signal name.
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

  /**
   * Resizes the command's terminal (spawned with `pty`); the command gets SIGWINCH.
   * @throws {CorralError} `POLICY_INVALID` (field `pty`) when it has no terminal.
   */
  async resize(cols: number, rows: number): Promise<void> {
    await this.started;
    if (this.terminalFd === undefined) throw new CorralError('POLICY_INVALID', 'this sandbox has no terminal (spawn it with pty)', { field: 'pty' });
    const fd = this.terminalFd;
    call((b) => b.resizeTerminal(fd, { cols, rows }));
  }

  /**
   * Resolves when every process of the sandbox is gone and its output has been relayed.
   * Output is in the result with `buffer: true`; otherwise it was streamed and the result's
   * `stdout` and `stderr` are empty.
   * @throws {CorralError} `SPAWN_FAILED` and the other codes of `run()`; `ABORTED` after the signal.
   */
  wait(): Promise<RunResult<Out>> {
    return this.done;
  }

  /** Kills the sandbox if it still runs and waits until it is gone (for `await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.finished) this.kill('SIGKILL');
    await this.done.catch(() => undefined);
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
 * @throws {CorralError} `POLICY_INVALID` at once for a bad policy, command or option; a
 * sandbox that cannot be created rejects `wait()` (and emits `'error'`).
 */
export function spawn(policy: Policy, argv: readonly string[], options: SpawnOptions & { buffer: true; encoding: 'buffer' }): SandboxProcess<Buffer>;
export function spawn(policy: Policy, argv: readonly string[], options: SpawnOptions & { buffer: true; lines: true }): SandboxProcess<string[]>;
export function spawn(policy: Policy, argv: readonly string[], options?: SpawnOptions & { encoding?: BufferEncoding; lines?: false }): SandboxProcess<string>;
export function spawn(policy: Policy, argv: readonly string[], options?: SpawnOptions): SandboxProcess<Output>;
export function spawn(policy: Policy, argv: readonly string[], options?: SpawnOptions): SandboxProcess<Output> {
  return new SandboxProcess(policy, argv, options);
}
