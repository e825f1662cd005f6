// Runs in: the Node process (types only). The policy as TypeScript sees it; the native core
// validates it and is the authority on what each field accepts.
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
  /** The JSON Schema a policy file follows (`corral/schema/policy.schema.json`), for editors; ignored. */
  $schema?: string;
  /** What the command may read, write and execute, and what stays hidden. */
  fs?: FsPolicy;
  /**
   * `'none'`: an empty network namespace with loopback up.
   * `'loopback'`: the same, named for intent.
   * `'host'`: the host's network (reported as a caveat).
   * Or an allow-list reached through corral's proxy (`NetworkRules`).
   * @default 'none'
   */
  network?: NetworkPolicy;
  /** Variables to set in the sandbox (on top of PATH, HOME, LANG, TERM, TZ). */
  env?: Record<string, string>;
  /**
   * Variables to copy from the caller: a list of names, or `true` for everything
   * (discouraged: tokens in your environment would reach the command).
   * @default false
   */
  inheritEnv?: boolean | readonly string[];
  /** Working directory inside the sandbox; must be a visible directory. @default the caller's if visible, else `/` */
  cwd?: string;
  /** The sandbox's hostname. @default 'corral' */
  hostname?: string;
  /** Resource limits: memory, CPU, processes, files, output. */
  limits?: Limits;
  /** Wall-clock limit in ms, or a string such as `'500ms'`, `'5s'`, `'2m'`. The whole sandbox is killed when it passes. */
  timeout?: Duration;
  /** A profile name (see `profiles()`), or a profile with extra allowed / denied system calls. @default 'default' */
  seccomp?: SeccompProfileName | SeccompPolicy;
  /** Refuse to run when any rule cannot be enforced on this host, instead of reporting a caveat. @default false */
  strict?: boolean;
}

/**
 * File system rules. Paths may be absolute, relative to the caller's working directory, or
 * start with `~/`. A grant (`read`, `write`, `exec`, a volume's `source`) means the path as
 * written and must exist: a symlink on the way is refused, unless it sits in a directory
 * only root can write (`/var/run -> /run`, `/bin -> usr/bin`, a home directory that is a
 * link an administrator made), since an earlier run could otherwise have planted it to
 * redirect this one. `deny`, `protect` and `noexec` take host paths and hold at every place
 * the path appears in the sandbox (a volume can show it a second time).
 */
export interface FsPolicy {
  /** Read-only paths, added to the system defaults. `'/'` grants the whole host (its secrets still masked). */
  read?: readonly string[];
  /**
   * Read-write paths. Programs written there can run (by every route: exec, the dynamic
   * loader, mapping executable), as can those in the private `/tmp` and `/dev/shm`, unless
   * `execWritable` is `false` or the path is listed in `noexec`.
   */
  write?: readonly string[];
  /** Paths whose files may be executed (the system directories always may). Implies read. */
  exec?: readonly string[];
  /**
   * Paths whose files never run, wherever they appear (mounted `noexec`), also inside
   * `write` or `exec` paths; `'/tmp'` and `'/dev/shm'` name the sandbox's own.
   */
  noexec?: readonly string[];
  /**
   * Whether places the command can write may also run programs: `true` (default) as in
   * bubblewrap and most CI sandboxes, so `make && make test` and `go test ./...` work;
   * `false` is W^X: every writable place is `noexec`, memory files cannot run where the
   * kernel allows refusing them (else a caveat), ephemeral system directories stay
   * read-only, and a path both writable and executable is an error.
   * @default true
   */
  execWritable?: boolean;
  /**
   * Paths hidden inside readable trees (e.g. `~/.ssh`, `~/.aws`, `.env`): a directory shows
   * empty, a file shows empty, and neither can be written. A path that does not exist yet
   * is reserved by an empty placeholder for the sandbox's lifetime, so one created later is
   * hidden too. A path the sandbox cannot see is a caveat; granting a path inside a denied
   * one is an error.
   */
  deny?: readonly string[];
  /**
   * Paths kept read-only inside writable trees (e.g. `.git/hooks`, `.git/config`,
   * `~/.bashrc`), unchanged under their names: every directory and symlink on the way is
   * pinned, so renaming or replacing one (`mv .git .git.orig`) fails. A protected path that
   * does not exist yet cannot be created: an empty placeholder stands at its first missing
   * component for the sandbox's lifetime (a directory when the path ends with `/`).
   */
  protect?: readonly string[];
  /** Host paths bound at a different, absolute place inside (read-write unless `readOnly`, not executable unless `exec`). */
  volumes?: readonly Volume[];
  /**
   * `'direct'` (default): writes to granted paths reach the host.
   * `'ephemeral'`: every visible directory is writable, but writes land in an overlay and
   * vanish with the sandbox.
   * `'overlay'`: writes to `write` paths land in an overlay; the result's `changes` lists
   * them and `commit()` applies them to the host (or `discard()` drops them).
   * The overlay layers live in memory, capped by `limits.disk`. A tree with mount points
   * inside cannot be overlaid in a user namespace: it stays read-only, with a caveat.
   * @default 'direct'
   */
  writeMode?: 'direct' | 'ephemeral' | 'overlay';
  /**
   * Unix sockets the sandbox may connect to. Every other socket file inside granted trees
   * is hidden (host agents such as Docker's or ssh-agent's are a way out otherwise).
   */
  allowUnixSockets?: readonly string[];
}

export interface Volume {
  /** Host path (absolute, relative to the caller, or `~/…`). */
  source: string;
  /** Absolute path inside the sandbox. */
  target: string;
  /** Read-only inside. @default false */
  readOnly?: boolean;
  /** Files in it may be executed. @default false */
  exec?: boolean;
}

export type NetworkPolicy = 'none' | 'loopback' | 'host' | NetworkRules;

/**
 * An allow-list enforced by a host-side proxy (`mode: 'proxy'`, the default): the sandbox
 * keeps an empty network namespace; its HTTP_PROXY / HTTPS_PROXY (HTTP CONNECT and plain
 * HTTP) and ALL_PROXY (SOCKS5 with remote DNS) lead to the proxy, which checks every
 * destination. Programs that ignore proxy settings cannot connect anywhere. Every refusal
 * is reported in `RunResult.violations`.
 */
export interface NetworkRules {
  /**
   * Reachable destinations: `example.com` (exactly), `*.example.com` (any subdomain, not
   * the bare name), IPs and CIDR ranges, each with an optional `:port`. No rule: denied.
   * A name that resolves to loopback, link-local (cloud metadata) or similar addresses is
   * refused unless that address is allowed explicitly or pinned in `hosts`.
   */
  allow?: readonly string[];
  /** Refused even when allowed (deny beats allow). Same syntax as `allow`. */
  deny?: readonly string[];
  /** Names pinned to addresses for the proxy, like /etc/hosts: `{ 'api.test': '127.0.0.1' }`. */
  hosts?: Record<string, string>;
  /** `'proxy'` as above; `'host'`: the host's network, narrowed by the port lists. @default 'proxy' */
  mode?: 'proxy' | 'host';
  /** TCP ports the command may bind (Landlock, Linux 6.7+); unset: any. */
  bindPorts?: readonly number[];
  /** TCP ports the command may connect to (Landlock, Linux 6.7+); unset: any. */
  connectPorts?: readonly number[];
}

/** Sizes are bytes (number) or strings such as `'64k'`, `'256M'`, `'1.5G'`. */
export interface Limits {
  /**
   * Memory for the whole sandbox, enforced by a cgroup of its own (the kernel's OOM killer
   * acts, `RunResult.oomKilled` says so). Where corral cannot create cgroups, each process's
   * address space is limited instead and `plan()` carries a caveat.
   */
  memory?: Size;
  /** Share of CPUs for the whole sandbox, e.g. `0.5` (a cgroup; a caveat where none). */
  cpus?: number;
  /**
   * Most processes (and threads) in the sandbox at once (a cgroup; else RLIMIT_NPROC, with a
   * caveat). Unset: 2048, through RLIMIT_NPROC, which the kernel counts per sandbox.
   */
  pids?: number;
  /** Maximum number of open files per process. */
  openFiles?: number;
  /** Largest file a process may write. */
  fileSize?: Size;
  /**
   * Memory the sandbox may fill with files: its private `/tmp`, `/dev/shm` and the overlay
   * layers of the capturing write modes share it (one tmpfs).
   * @default '1G'
   */
  disk?: Size;
  /** CPU time per process, ms or `'10s'`. */
  cpuTime?: Duration;
  /**
   * Cap on captured stdout and on captured stderr; the rest is discarded (the command keeps
   * running) and `outputTruncated` set. Where output is captured (`run()`, pools, a
   * template's own output) it defaults to 100 MiB, as execa's `maxBuffer` does. Streamed
   * output (`spawn()`) is yours to read and is not capped.
   */
  maxOutputBytes?: Size;
}

/** Built-in seccomp profiles, from most to least restrictive. */
export type SeccompProfileName = 'strict' | 'compute' | 'default' | 'network' | 'permissive';

/** A seccomp profile with extra allowed or refused system calls. */
export interface SeccompPolicy {
  /** @default 'default' */
  profile?: SeccompProfileName;
  /** System calls to allow on top of the profile (e.g. `'ptrace'`); io_uring, userfaultfd and openat2 cannot be allowed (POLICY_INVALID). */
  allow?: readonly string[];
  /** System calls to refuse with EPERM on top of the profile. */
  deny?: readonly string[];
}

/** A unit of size: binary multiples (`k` = 1024), with an optional `B` or `iB`. */
export type SizeUnit = `${'k' | 'K' | 'm' | 'M' | 'g' | 'G' | 't' | 'T'}${'' | 'B' | 'b' | 'iB' | 'ib'}` | 'B' | 'b';

/**
 * A size in bytes: a number, or a string such as `'4096'`, `'64k'`, `'256M'`, `'1.5G'`.
 * Read by corral's native parser; this type catches the common mistakes at compile time.
 */
export type Size = number | `${number}` | `${number}${SizeUnit}`;

/** A unit of time. */
export type DurationUnit = 'ms' | 's' | 'sec' | 'm' | 'min' | 'h';

/**
 * A duration: milliseconds as a number, or a string such as `'250ms'`, `'5s'`, `'2m'`,
 * `'1h'` (a string without a unit is milliseconds too; at most 30 days).
 */
export type Duration = number | `${number}` | `${number}${DurationUnit}`;
