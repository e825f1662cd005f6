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
  /** Output beyond `limits.maxOutputBytes` was discarded. */
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

/** What the host supports, as `check()` reports it. */
export interface HostCapabilities {
  os: string;
  arch: string;
  kernel: string;
  /** Effective uid of the process that creates sandboxes. */
  uid: number;
  /** Highest Landlock ABI; 0 when unavailable. */
  landlockAbi: number;
  userNamespaces: boolean;
  userNamespacesDetail?: string;
  seccomp: boolean;
  seccompUserNotif: boolean;
  /** `open_tree` / `move_mount` / `mount_setattr` (Linux 5.12+). */
  mountApi: boolean;
  overlayInUserns: boolean;
  pidfd: boolean;
  cgroup: {
    version: 'v2' | 'v1' | 'hybrid' | 'none';
    unifiedMount?: string;
    controllers: string[];
    writable: boolean;
    detail?: string;
  };
}

/** One step of the sandbox's mount view. */
export type MountStep =
  | { type: 'bind'; source: string; target: string; writable: boolean; exec: boolean }
  | { type: 'overlay'; lower: string; target: string; exec: boolean; layer: number }
  | { type: 'tmpfs'; target: string; size?: number; mode: number }
  | { type: 'proc'; target: string }
  | { type: 'dev'; target: string }
  | { type: 'symlink'; link: string; target: string }
  | { type: 'mask'; target: string };

/** The compiled policy: what each rule becomes on this host. */
export interface Plan {
  sandbox: {
    argv: string[];
    env: Record<string, string>;
    cwd: string;
    hostname: string;
    uid: number;
    gid: number;
    network: 'isolated' | 'host' | { proxied: { httpPort: number; socksPort: number } };
    mounts: MountStep[];
    landlock: {
      rules: { path: string; access: { list: boolean; read: boolean; write: boolean; exec: boolean; ioctl: boolean } }[];
      abi: number;
      scoped: boolean;
    };
    seccomp: { profile: string; allow: string[]; deny: string[] };
    rlimits: { addressSpace?: number; processes?: number; openFiles?: number; fileSize?: number; cpuSeconds?: number };
    /** Tree-wide limits a cgroup of the sandbox's own enforces. */
    cgroup?: { memory?: number; cpus?: number; pids?: number };
    /** The command's terminal, when spawned with `pty`. */
    terminal?: { cols: number; rows: number };
    timeoutMs?: number;
    /** Where overlay writes land (write modes `ephemeral` and `overlay`). */
    overlay?: { size?: number; capture: boolean };
    /** Empty placeholders created on the host for the run for protected paths that do not exist. */
    placeholders?: { root: string; relative: string; dir: boolean }[];
  };
  /** Everything this host cannot enforce; empty means every rule holds. */
  caveats: Caveat[];
  /** The parsed allow-list the network proxy enforces, for proxied networks. */
  network?: unknown;
  maxOutputBytes?: number;
  strict: boolean;
}

/** A seccomp profile and what it does. */
export interface SeccompProfileInfo {
  name: string;
  description: string;
}
