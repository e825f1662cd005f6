// Runs in: the Node process. What a run resolves with, and how the addon's output becomes
// it: the public result types, `toResult`, and signal names and numbers.
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import type { CaveatCode } from './caveats';
import { CorralError } from './errors';
import { callAsync, type NativeRunOutput } from './native';
import { decode } from './output';

/** The limits in force for a run: tree-wide in a cgroup where possible, per process otherwise. */
export interface RunLimits {
  /** Enforced for the whole tree by a cgroup of the sandbox's own. */
  cgroup?: { memory?: number; cpus?: number; pids?: number } | null;
  /** Per-process limits (setrlimit). */
  rlimits: { addressSpace?: number; processes?: number; openFiles?: number; fileSize?: number; cpuSeconds?: number };
  timeoutMs?: number | null;
  maxOutputBytes?: number | null;
}

/** A guarantee that does not hold on this host, and why. */
export interface Caveat {
  /** Stable identifier such as `LANDLOCK_UNAVAILABLE` or `HOST_NETWORK` (docs/errors.md lists them). */
  code: CaveatCode;
  message: string;
  /** The policy field concerned. */
  field?: string;
}

/** What a run's output becomes: strings (the default), Buffers, or lines. */
export type Output = string | Buffer | string[];

/** The parts of a result that do not depend on how the run ended. */
export interface RunResultBase<Out extends Output = string> {
  /** The command as given. */
  command: string[];
  /** Captured stdout (empty when `stdout` went elsewhere). */
  stdout: Out;
  /** Captured stderr (empty when `stderr` went elsewhere). */
  stderr: Out;
  /** stdout and stderr interleaved as they arrived, with `all: true`. */
  all?: Out;
  /** The command did not exit 0: it exited otherwise, was killed, or timed out. */
  failed: boolean;
  /** From sandbox creation until its last process was gone. */
  wallTimeMs: number;
  /** CPU time of the whole process tree (an estimate when `statsEstimated.cpuTime`). */
  cpuTimeMs: { user: number; system: number };
  /**
   * Peak memory: of the whole process tree where a cgroup measured it (`limits.cgroup` is
   * set), else the largest resident set of any one process (`statsEstimated.peakMemory`).
   */
  peakMemoryBytes: number;
  /**
   * Which figures are estimates, because no cgroup counted this sandbox (one exists where
   * `limits.cgroup` is set). CPU time then counts only processes that were waited for: a
   * process whose parent ignores SIGCHLD is reaped unseen, with everything it started.
   * Peak memory is then the largest resident set of one such process, not the tree's.
   */
  statsEstimated: { cpuTime: boolean; peakMemory: boolean };
  /** The wall-clock timeout fired and the sandbox was killed. */
  timedOut: boolean;
  /** The kernel's OOM killer ended a process of the sandbox (from cgroup events). */
  oomKilled: boolean;
  /** The limits that were in force, and what enforced them. */
  limits: RunLimits;
  /**
   * Output was cut: beyond `limits.maxOutputBytes` (by default 100 MiB per stream when
   * output is captured), or beyond the longest string Node can hold when decoding.
   */
  outputTruncated: boolean;
  /** What this host could not enforce for this run. */
  caveats: Caveat[];
  /** What the sandbox was refused: network connections the allow-list proxy turned away. */
  violations: Violation[];
  /**
   * With `fs.writeMode: 'overlay'`: what the command wrote to the captured paths, held
   * aside until you `commit()` (apply to the host) or `discard()` it. Undefined otherwise.
   */
  changes?: CapturedChanges;
}

/** How a command ended: an exit code, or the signal that killed it (never both). */
export type Exit =
  | {
      /** The command's exit code. */
      exitCode: number;
      signal: null;
    }
  | {
      exitCode: null;
      /** The signal that killed the command (`'SIGKILL'` after a timeout or `kill()`). */
      signal: NodeJS.Signals;
    };

/**
 * What `run()` resolves with. A non-zero exit, a signal or a timeout is a result, not an
 * error (unless `reject: true`); `failed` says whether the command succeeded.
 */
export type RunResult<Out extends Output = string> = RunResultBase<Out> & Exit;

/** The error `reject: true` throws for a failed command: it carries the whole result. */
export class CommandFailedError<Out extends Output = Output> extends CorralError {
  readonly result: RunResult<Out>;
  constructor(result: RunResult<Out>) {
    const how = result.timedOut ? 'timed out' : result.signal ? `was killed by ${result.signal}` : `exited with ${result.exitCode}`;
    super('COMMAND_FAILED', `${result.command.join(' ')} ${how}`);
    this.name = 'CommandFailedError';
    this.result = result;
  }
}

/** Something the sandbox tried and was refused. */
export interface Violation {
  kind: 'network';
  /** Host name or address the command asked for. */
  destination: string;
  port: number;
  /** The deny rule that refused it, if one did. */
  rule?: string;
  /** Why, e.g. `not in the allow list`. */
  reason: string;
  /**
   * How it asked: `http`, `connect` or `socks5`; `*` for a refusal not about one
   * destination (too many connections at once, or the end of a list that was too long).
   */
  protocol: string;
  /** How many times this same refusal happened (repeats are counted, not listed again). */
  count: number;
}

/** What a changed path is (after the change; for a deletion, what is removed). */
export type FileType = 'file' | 'dir' | 'symlink' | 'other';

/**
 * One change a sandboxed command made to a captured path: what `commit()` does there.
 * Names are as the command chose them: print them with care (the CLI escapes control
 * characters; so should anything that shows them on a terminal).
 */
export interface FileChange {
  /** Host path the change applies to. A name that is not valid UTF-8 shows U+FFFD where it is not; `rawPath` then has its bytes. */
  path: string;
  /** The path's exact bytes, only when they are not valid UTF-8. */
  rawPath?: Buffer;
  /** `replaced`: something of another type (`type`) now stands where the host has a `previousType`. */
  kind: 'added' | 'modified' | 'deleted' | 'replaced';
  /**
   * What stands at `path` after the commit (for a deletion: what goes). `other` is a
   * socket, fifo or device: never created on the host; committing it removes what it replaced.
   */
  type: FileType;
  /** For `replaced`: what stood there (a directory goes with everything in it). */
  previousType?: FileType;
  /** `type === 'dir'`: a directory added, replaced or deleted as a whole. */
  dir: boolean;
  /** Size in bytes of the new content: a file's length, a symlink target's length (0 for deletions and directories). */
  size: number;
  /** Permission bits the host gets (files and directories). Never set-user-ID or set-group-ID. */
  mode?: number;
  /** Set-user-ID / set-group-ID bits the command set, which commit drops. */
  droppedMode?: number;
  /** A symlink's target. */
  target?: string;
}

/** Writes captured by an overlay run. Nothing reaches the host until `commit()`. */
export interface CapturedChanges {
  /** Added, modified, replaced and deleted files and directories, in path order (at most 50,000). */
  files: FileChange[];
  /** Changes past the listing's bounds (50,000 entries or 16 MiB of paths): counted, not listed. `commit()` applies them too. */
  omitted: number;
  /**
   * Set when the changes could not be listed in full (a tree deeper than PATH_MAX, more
   * than a million entries, an unreadable entry): `files` is what was found before, and
   * `commit()` refuses.
   */
  error?: string;
  /**
   * Applies exactly these changes to the host, then frees the captured layers. Everything
   * is staged first; if applying fails, what was applied is undone and the error says so
   * (or names what could not be undone).
   */
  commit(): Promise<void>;
  /** Frees the captured layers without touching the host (also happens when the result is garbage collected). */
  discard(): void;
}

/** How the output of a run is returned: `'buffer'`, or a `BufferEncoding` to decode with. */
export type OutputEncoding = 'buffer' | BufferEncoding;

/** Where the command's stdin comes from. */
export type StdinOption = 'pipe' | 'inherit' | 'ignore' | number | Readable;
/** Where the command's stdout or stderr goes. */
export type StdoutOption = 'pipe' | 'inherit' | 'ignore' | number | Writable;

/** Options for `run()`. */
export interface RunOptions {
  /** Data for the command's stdin; the stream ends after it. Implies `stdin: 'pipe'`. */
  input?: string | Buffer | Uint8Array;
  /**
   * The command's stdin: `'ignore'` (/dev/null), `'inherit'` (this process's), a file
   * descriptor, or a Readable to stream from. `'pipe'` with `input`.
   * @default 'ignore', or 'pipe' with `input`
   */
  stdin?: StdinOption;
  /**
   * `'pipe'`: captured into the result. `'inherit'`: this process's stdout. `'ignore'`:
   * /dev/null. A file descriptor, or a Writable to stream into. Only `'pipe'` is captured.
   * @default 'pipe'
   */
  stdout?: StdoutOption;
  /** As `stdout`, for stderr. @default 'pipe' */
  stderr?: StdoutOption;
  /** `'buffer'` keeps Buffers; any `BufferEncoding` decodes. @default 'utf8' */
  encoding?: OutputEncoding;
  /** Split captured output into lines (without their line endings). @default false */
  lines?: boolean;
  /** Also return `all`: stdout and stderr interleaved as they arrived. @default false */
  all?: boolean;
  /**
   * Throw a `CommandFailedError` (code `COMMAND_FAILED`, carrying the result) when the
   * command fails, as execa does by default. @default false
   */
  reject?: boolean;
  /** Kills the sandbox when aborted; the call then rejects with code `ABORTED` (`cause`: the reason). */
  signal?: AbortSignal;
}

/**
 * The run's statistics as the addon hands them over (`RunOutput.info`, JSON typed `any` in
 * the generated binding): the core's `RunStats` plus caveats, limits, truncation, captured
 * changes and violations.
 */
interface NativeRunInfo {
  status: { kind: 'exited'; code: number } | { kind: 'signaled'; signal: number };
  wallTimeUs: number;
  userTimeUs: number;
  systemTimeUs: number;
  peakMemoryBytes: number;
  peakMemoryTree?: boolean;
  cpuTimeTree?: boolean;
  timedOut: boolean;
  truncated?: boolean;
  oomKilled?: boolean;
  limits?: RunLimits;
  caveats: Caveat[];
  changes?: { omitted: number; error?: string | null };
  violations?: { destination: string; port: number; rule?: string | null; reason: string; protocol: string; count?: number }[];
}

/** A `FileChange` as the addon lists it: the exact bytes of a path that is not UTF-8 in hex. */
type NativeFileChange = Omit<FileChange, 'rawPath'> & { pathHex?: string };

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/** `SIGTERM` for 15; realtime signals as `SIGRTMIN+n` (Node has no names for them). */
export function signalName(n: number): NodeJS.Signals {
  return SIGNAL_NAMES.get(n) ?? (`SIGRTMIN+${n - 34}` as NodeJS.Signals);
}

/** How `status` ended, as the result's exit code and signal. */
function exitOf(status: NativeRunInfo['status']): Exit {
  return status.kind === 'exited' ? { exitCode: status.code, signal: null } : { exitCode: null, signal: signalName(status.signal) };
}

/** Shapes the addon's output as a `RunResult`, its output still bytes. */
export function toResult(argv: string[], out: NativeRunOutput): RunResult<Buffer> {
  const info = out.info as NativeRunInfo;
  const captured = out.captured;
  const exit = exitOf(info.status);
  // Made into objects on first use only (a listing may hold 50,000 entries).
  let files: FileChange[] | undefined;
  return {
    command: argv,
    ...exit,
    stdout: out.stdout,
    stderr: out.stderr,
    failed: exit.exitCode !== 0 || info.timedOut,
    wallTimeMs: info.wallTimeUs / 1000,
    cpuTimeMs: { user: info.userTimeUs / 1000, system: info.systemTimeUs / 1000 },
    peakMemoryBytes: info.peakMemoryBytes,
    statsEstimated: { cpuTime: !info.cpuTimeTree, peakMemory: !info.peakMemoryTree },
    timedOut: info.timedOut,
    oomKilled: info.oomKilled ?? false,
    limits: info.limits ?? { rlimits: {} },
    outputTruncated: info.truncated ?? false,
    caveats: info.caveats,
    violations: (info.violations ?? []).map((v) => ({
      kind: 'network' as const,
      destination: v.destination,
      port: v.port,
      ...(v.rule ? { rule: v.rule } : {}),
      reason: v.reason,
      protocol: v.protocol,
      count: v.count ?? 1,
    })),
    ...(captured && info.changes
      ? {
          changes: {
            get files() {
              files ??= (JSON.parse(captured.files()) as NativeFileChange[]).map(({ pathHex, ...c }) => (pathHex === undefined ? c : { ...c, rawPath: Buffer.from(pathHex, 'hex') }));
              return files;
            },
            omitted: info.changes.omitted,
            ...(info.changes.error == null ? {} : { error: info.changes.error }),
            commit: async () => callAsync(() => captured.commit()),
            discard: () => captured.discard(),
          },
        }
      : {}),
  };
}

/** How a caller wants output back. */
export interface Presentation {
  encoding: OutputEncoding;
  lines: boolean;
}

/**
 * The result with its output as asked: Buffers, decoded strings (cut to what a string can
 * hold, which `outputTruncated` then says), or lines.
 */
export function present(raw: RunResult<Buffer>, how: Presentation): RunResult<Output> {
  if (how.encoding === 'buffer') return raw;
  let cut = false;
  const text = (b: Buffer): string | string[] => {
    const d = decode(b, how.encoding as BufferEncoding);
    cut ||= d.truncated;
    return how.lines ? splitLines(d.text) : d.text;
  };
  const stdout = text(raw.stdout);
  const stderr = text(raw.stderr);
  const all = raw.all === undefined ? {} : { all: text(raw.all) };
  return { ...raw, stdout, stderr, ...all, outputTruncated: raw.outputTruncated || cut } as RunResult<Output>;
}

/** Lines without their endings (`\n` or `\r\n`); no empty last line for a final newline. */
export function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** The result, or with `reject` a `CommandFailedError` for a command that failed. */
export function settle<R extends RunResult<Output>>(result: R, reject: boolean | undefined): R {
  if (reject && result.failed) throw new CommandFailedError(result);
  return result;
}
