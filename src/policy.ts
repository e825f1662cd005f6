/**
 * A sandbox policy. Everything is optional: `{}` is a safe default in which a command can
 * run the system's programs (read-only `/usr`, `/bin`, `/sbin`, `/lib*`, `/etc` minus
 * secrets), sees a private `/tmp`, its own pid 1, hostname and IPC, no network, a clean
 * environment, the `default` seccomp profile and no inherited file descriptors.
 *
 * Validation happens in corral's native core, which names the offending field in a
 * `CorralError` with code `POLICY_INVALID`.
 */
export interface Policy {
  fs?: FsPolicy;
  /**
   * `'none'` (default): an empty network namespace with loopback up.
   * `'loopback'`: the same, named for intent.
   * `'host'`: the host's network (reported as a caveat).
   */
  network?: NetworkPolicy;
  /** Variables to set in the sandbox (on top of PATH, HOME, LANG, TERM, TZ). */
  env?: Record<string, string>;
  /**
   * Variables to copy from the caller: a list of names, or `true` for everything
   * (discouraged: tokens in your environment would reach the command). Default `false`.
   */
  inheritEnv?: boolean | string[];
  /** Working directory inside the sandbox; must be visible. Default: the caller's if visible, else `/`. */
  cwd?: string;
  /** The sandbox's hostname. Default `corral`. */
  hostname?: string;
  limits?: Limits;
  /** Wall-clock limit in ms, or a string such as `'500ms'`, `'5s'`, `'2m'`. The whole sandbox is killed when it passes. */
  timeout?: number | string;
  /** A profile name (see `profiles()`), or a profile with extra allowed / denied system calls. */
  seccomp?: SeccompProfileName | SeccompPolicy;
  /** Refuse to run when any rule cannot be enforced on this host, instead of reporting a caveat. */
  strict?: boolean;
}

/**
 * File system rules. Paths may be absolute, relative to the caller's working directory, or
 * start with `~/`; symlinks are resolved when the policy is planned, and the paths must exist.
 */
export interface FsPolicy {
  /** Read-only paths, added to the system defaults. */
  read?: string[];
  /** Read-write paths. Files there are not executable unless also listed in `exec`. */
  write?: string[];
  /** Paths whose files may be executed (the system directories always may). Implies read. */
  exec?: string[];
  /** Paths hidden inside readable trees. */
  deny?: string[];
  /** Paths kept read-only inside writable trees, even ones that do not exist yet. */
  protect?: string[];
  /** Host paths bound at a different place inside. */
  volumes?: { source: string; target: string; readOnly?: boolean }[];
  /** `'direct'` (default) writes to the host; `'ephemeral'` and `'overlay'` capture writes. */
  writeMode?: 'direct' | 'ephemeral' | 'overlay';
  /** Pathname Unix sockets the sandbox may connect to. */
  allowUnixSockets?: string[];
}

export type NetworkPolicy = 'none' | 'loopback' | 'host' | { allow: string[]; deny?: string[]; hosts?: Record<string, string> };

/** Sizes are bytes (number) or strings such as `'64k'`, `'256M'`, `'1.5G'`. */
export interface Limits {
  /** Memory per process (address space). */
  memory?: number | string;
  /** Share of CPUs, e.g. `0.5`. */
  cpus?: number;
  /** Maximum number of processes. */
  pids?: number;
  /** Maximum number of open files per process. */
  openFiles?: number;
  /** Largest file a process may write. */
  fileSize?: number | string;
  /** Size of the private `/tmp`. */
  disk?: number | string;
  /** CPU time per process, ms or `'10s'`. */
  cpuTime?: number | string;
  /** Cap on captured stdout and on captured stderr; the rest is discarded and `outputTruncated` set. */
  maxOutputBytes?: number | string;
}

/** Built-in seccomp profiles, from most to least restrictive. */
export type SeccompProfileName = 'strict' | 'compute' | 'default' | 'network' | 'permissive';

export interface SeccompPolicy {
  profile?: SeccompProfileName;
  /** System calls to allow on top of the profile (e.g. `'io_uring_setup'`). */
  allow?: string[];
  /** System calls to refuse with EPERM on top of the profile. */
  deny?: string[];
}
