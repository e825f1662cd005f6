// Runs in: the Node process. What a run resolves with, and how the addon's output becomes
// it: the public result types, `toResult`, and signal names and numbers.
import { constants } from 'node:os';
import { callAsync, type NativeRunOutput } from './native';
import { CorralError } from './errors';
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
  /** Stable identifier such as `LANDLOCK_UNAVAILABLE` or `HOST_NETWORK`. */
  code: string;
  message: string;
  /** The policy field concerned. */
  field?: string;
}

/** What `run()` resolves with. A non-zero exit is a result, not an error. */
export interface RunResult<Out extends string | Buffer = string> {
  /** The command as given. */
  command: string[];
  /** Exit code, or `null` when the command was killed by a signal. */
  exitCode: number | null;
  /** The signal that killed the command (`'SIGKILL'` after a timeout), or `null`. */
  signal: NodeJS.Signals | null;
  stdout: Out;
  stderr: Out;
  /** From sandbox creation until its last process was gone. */
  wallTimeMs: number;
  /** CPU time of the whole process tree. */
  cpuTimeMs: { user: number; system: number };
  /**
   * Peak memory: of the whole process tree where a cgroup measured it (`limits.cgroup` is
   * set), else the largest resident set of any one process.
   */
  peakMemoryBytes: number;
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
  /** How it asked: `http`, `connect` or `socks5`. */
  protocol: string;
}

/** One change a sandboxed command made to a captured path. */
export interface FileChange {
  /** Host path the change applies to. */
  path: string;
  kind: 'added' | 'modified' | 'deleted';
  /** A directory added or deleted as a whole. */
  dir: boolean;
  /** Size in bytes of the new content (0 for deletions and directories). */
  size: number;
}

/** Writes captured by an overlay run. Nothing reaches the host until `commit()`. */
export interface CapturedChanges {
  /** Added, modified and deleted files and directories. */
  files: FileChange[];
  /** Applies exactly these changes to the host, then frees the captured layers. */
  commit(): Promise<void>;
  /** Frees the captured layers without touching the host (also happens when the result is garbage collected). */
  discard(): void;
}

export interface RunOptions {
  /** Data for the command's stdin (default: `/dev/null`). */
  input?: string | Buffer | Uint8Array;
  /** `'utf8'` (default) decodes output to strings; `'buffer'` keeps Buffers. */
  encoding?: 'utf8' | 'buffer';
  /** Kills the sandbox when aborted; `run()` then rejects with `CorralError` code `ABORTED`. */
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
  timedOut: boolean;
  truncated?: boolean;
  oomKilled?: boolean;
  limits?: RunLimits;
  caveats: Caveat[];
  changes?: FileChange[];
  violations?: { destination: string; port: number; rule?: string | null; reason: string; protocol: string }[];
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/** `SIGTERM` for 15, or `null` for a number this platform does not name. */
export function signalName(n: number): NodeJS.Signals | null {
  return SIGNAL_NAMES.get(n) ?? null;
}

/** 15 for `SIGTERM`; numbers pass through. */
export function signalNumber(signal: NodeJS.Signals | number): number {
  if (typeof signal === 'number') return signal;
  const n = (constants.signals as Record<string, number>)[signal];
  if (n === undefined) throw new CorralError('POLICY_INVALID', `unknown signal ${signal}`, { field: 'signal' });
  return n;
}

/** Shapes the addon's output as a `RunResult`, its output kept as bytes or decoded. */
export function toResult(argv: string[], out: NativeRunOutput, encoding: 'buffer'): RunResult<Buffer>;
export function toResult(argv: string[], out: NativeRunOutput, encoding: BufferEncoding): RunResult<string>;
export function toResult(argv: string[], out: NativeRunOutput, encoding: 'buffer' | BufferEncoding): RunResult<string | Buffer>;
export function toResult(argv: string[], out: NativeRunOutput, encoding: 'buffer' | BufferEncoding): RunResult<string | Buffer> {
  const info = out.info as NativeRunInfo;
  const captured = out.captured;
  let cut = false;
  const text = (b: Buffer): string | Buffer => {
    if (encoding === 'buffer') return b;
    const d = decode(b, encoding);
    cut ||= d.truncated;
    return d.text;
  };
  const stdout = text(out.stdout);
  const stderr = text(out.stderr);
  return {
    command: argv,
    exitCode: info.status.kind === 'exited' ? info.status.code : null,
    signal: info.status.kind === 'signaled' ? signalName(info.status.signal) : null,
    stdout,
    stderr,
    wallTimeMs: info.wallTimeUs / 1000,
    cpuTimeMs: { user: info.userTimeUs / 1000, system: info.systemTimeUs / 1000 },
    peakMemoryBytes: info.peakMemoryBytes,
    timedOut: info.timedOut,
    oomKilled: info.oomKilled ?? false,
    limits: info.limits ?? { rlimits: {} },
    outputTruncated: (info.truncated ?? false) || cut,
    caveats: info.caveats,
    violations: (info.violations ?? []).map((v) => ({
      kind: 'network' as const,
      destination: v.destination,
      port: v.port,
      ...(v.rule ? { rule: v.rule } : {}),
      reason: v.reason,
      protocol: v.protocol,
    })),
    ...(captured && info.changes
      ? {
          changes: {
            files: info.changes,
            commit: async () => callAsync(() => captured.commit()),
            discard: () => captured.discard(),
          },
        }
      : {}),
  };
}
