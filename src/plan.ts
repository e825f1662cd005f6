// Runs in: the Node process. Questions answered without running anything: what a policy
// becomes on this host (`plan`), what the host supports (`check`), the seccomp profiles.
import { checkArgv, policyJson } from './arguments';
import { call, callerContext } from './native';
import type { Policy } from './policy';
import type { Caveat } from './result';

/**
 * Compiles `policy` without running anything: the resolved mount view, Landlock rules,
 * seccomp profile, limits and environment, plus every caveat where this host cannot
 * enforce a rule.
 *
 * @param argv The command, when the plan should show it (optional).
 * @throws {CorralError} `POLICY_INVALID` with `field` for a bad policy; `UNSUPPORTED` in
 * strict mode when there are caveats.
 */
export function plan(policy: Policy = {}, argv: readonly string[] = []): Plan {
  const json = policyJson(policy);
  const cmd = argv.length > 0 ? checkArgv(argv) : [];
  const raw = call((b) => b.plan(json, cmd, callerContext())) as Omit<Plan, 'sandbox'> & { spec: Plan['sandbox'] };
  const { spec, ...rest } = raw;
  return { sandbox: spec, ...rest };
}

/**
 * What this host supports: kernel, Landlock ABI, user namespaces, seccomp, cgroups.
 * @throws {CorralError} `UNSUPPORTED` where corral has no backend (macOS today), or the
 * addon or its helper cannot be loaded.
 */
export function check(): HostCapabilities {
  return call((b) => b.check()) as HostCapabilities;
}

/** The built-in seccomp profiles, from most to least restrictive. */
export function profiles(): SeccompProfileInfo[] {
  return call((b) => b.profiles()) as SeccompProfileInfo[];
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
  /** Memory files can be made non-executable for a sandbox (`vm.memfd_noexec`: Linux 6.3+, root callers). */
  memfdNoexec: boolean;
  cgroup: {
    version: 'v2' | 'v1' | 'hybrid' | 'none';
    unifiedMount?: string;
    controllers: string[];
    writable: boolean;
    detail?: string;
  };
  /** The hard limit on open files of the process that creates sandboxes: `limits.openFiles` cannot exceed it. */
  openFilesLimit?: number;
  /** The host identity a root caller's sandbox runs as, instead of host root. */
  identity: {
    /** Unprivileged host ids the sandbox's root maps onto; absent when none are free. */
    rootMapsTo?: { uid: number; gid: number };
    /** Where those ids come from, or why there are none. */
    detail?: string;
    /** The caller's grants can be idmapped mounts (their files stay the caller's). */
    idmappedMounts: boolean;
    /**
     * Opens of set-user-ID, set-group-ID and file-capability files through a root caller's
     * writable grants can be refused (fanotify permission events); where not, such a grant
     * gets the caveat `SETID_UNGUARDED`.
     */
    setidGuard?: boolean;
    /** Why they cannot, when they cannot. */
    setidGuardDetail?: string;
  };
}

/** One step of the sandbox's mount view. */
export type MountStep =
  | { type: 'bind'; source: string; target: string; writable: boolean; exec: boolean }
  | { type: 'overlay'; lower: string; target: string; exec: boolean; layer: number }
  /** The private `/tmp`: a directory of the sandbox's scratch tmpfs. */
  | { type: 'tmpfs'; target: string; exec: boolean }
  | { type: 'proc'; target: string }
  /** A minimal `/dev`; its `shm` is a directory of the scratch tmpfs. */
  | { type: 'dev'; target: string; shmExec: boolean }
  | { type: 'symlink'; link: string; target: string }
  | { type: 'mask'; target: string }
  /**
   * What the view shows at `target`, mounted on itself so that it cannot be renamed,
   * replaced or removed (protected paths, and every directory and symlink on the way to
   * them); maybe read-only, maybe with execution allowed (`exec: true`) or refused.
   */
  | { type: 'pin'; target: string; readOnly: boolean; exec?: boolean };

/** One allow-list rule as the proxy reads it. */
export interface NetworkRule {
  /** The rule as written. */
  rule: string;
  /** What it matches, in words (e.g. `the address ::1`). */
  matches: string;
  /** The one port it is limited to, if any. */
  port?: number;
}

/** The compiled policy: what each rule becomes on this host. */
export interface Plan {
  sandbox: {
    argv: string[];
    env: Record<string, string>;
    cwd: string;
    hostname: string;
    uid: number;
    gid: number;
    /**
     * For a root caller: the unprivileged host ids the sandbox's `uid`/`gid` map onto, and the
     * mounts (the caller's grants) that are idmapped so the caller's files there stay its own.
     * Absent when the sandbox's ids are the caller's own, one to one.
     */
    identity?: { hostUid: number; hostGid: number; idmapped: string[] };
    network: 'isolated' | 'host' | { proxied: { httpPort: number; socksPort: number } };
    mounts: MountStep[];
    landlock: {
      rules: { path: string; access: { list: boolean; read: boolean; write: boolean; exec: boolean; ioctl: boolean } }[];
      abi: number;
      scoped: boolean;
      /** TCP ports the command may bind, when limited. */
      bindPorts?: number[];
      /** TCP ports the command may connect to, when limited. */
      connectPorts?: number[];
    };
    seccomp: { profile: string; allow: string[]; deny: string[] };
    rlimits: { addressSpace?: number; processes?: number; openFiles?: number; fileSize?: number; cpuSeconds?: number };
    /** Tree-wide limits a cgroup of the sandbox's own enforces. */
    cgroup?: { memory?: number; cpus?: number; pids?: number };
    /** The command's terminal, when spawned with `pty`. */
    terminal?: { cols: number; rows: number };
    timeoutMs?: number;
    /** The sandbox's memory-backed storage: `/tmp`, `/dev/shm` and overlay layers share its size (`limits.disk`, default 1 GiB). */
    scratch: { size: number };
    /** Where overlay writes land (write modes `ephemeral` and `overlay`), in the scratch tmpfs. */
    overlay?: { capture: boolean };
    /** Memory files (memfd) cannot be executed in the sandbox. */
    memfdNoexec?: boolean;
    /** Empty placeholders created on the host for the sandbox's lifetime, standing in for denied or protected paths that do not exist yet. */
    placeholders?: { root: string; relative: string; dir: boolean }[];
  };
  /** Host paths behind the carve-outs (denied, protected, placeholders); a warm pool checks them before use. */
  watch?: string[];
  /** Everything this host cannot enforce; empty means every rule holds. */
  caveats: Caveat[];
  /** The parsed allow-list the network proxy enforces, for proxied networks: each rule as written and what it was read as. */
  network?: { allow: NetworkRule[]; deny: NetworkRule[]; hosts: Record<string, string[]> };
  /** What the seccomp filters amount to: calls an allow-list lets through (`strict`), calls refused outright, and calls checked by their arguments. */
  seccompCounts?: { allowed?: number; refused: number; argumentChecked: string[] };
  maxOutputBytes?: number;
  strict: boolean;
}

/** A seccomp profile and what it does. */
export interface SeccompProfileInfo {
  name: string;
  description: string;
}
