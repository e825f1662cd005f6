// Runs in: the Node process started by the `corral` command. The policy flags, and how a
// command line becomes a policy: `--preset NAME`, then `--policy FILE`, then the flags,
// merged in that order (see merge.ts).
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { describe, isPlainObject } from './values';
import { CorralError } from './errors';
import { mergePolicies } from './merge';
import type { Policy } from './policy';
import { preset } from './presets';

/** The flags `run` and `plan` share, as commander hands them over. */
export interface PolicyFlags {
  preset?: string[];
  policy?: string;
  read?: string[];
  write?: string[];
  exec?: string[];
  deny?: string[];
  protect?: string[];
  noexec?: string[];
  wx?: boolean;
  volume?: string[];
  writeMode?: string;
  allowUnixSocket?: string[];
  net?: string;
  netAllow?: string[];
  netDeny?: string[];
  netHost?: string[];
  env?: string[];
  inheritEnv?: string | boolean;
  clearEnv?: boolean;
  cwd?: string;
  hostname?: string;
  memory?: string;
  cpus?: string;
  pids?: string;
  nofile?: string;
  fileSize?: string;
  disk?: string;
  cpuTime?: string;
  maxOutput?: string;
  timeout?: string;
  seccomp?: string;
  seccompAllow?: string[];
  seccompDeny?: string[];
  strict?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Adds the policy flags to `cmd`. */
export function addPolicyFlags(cmd: Command): Command {
  return cmd
    .option('--preset <name>', 'start from a preset: ci, untrusted, agent, strict (see corral presets; repeatable)', collect)
    .option('--policy <file>', 'read a JSON policy file, on top of the preset (flags add to both)')
    .option('--read <path>', 'read-only path (repeatable)', collect)
    .option('--write <path>', 'read-write path (repeatable)', collect)
    .option('--exec <path>', 'path whose files may be executed (repeatable)', collect)
    .option('--deny <path>', 'hide a path inside readable trees, e.g. ~/.ssh (repeatable)', collect)
    .option('--protect <path>', 'keep a path read-only inside writable trees, e.g. .git/hooks (repeatable)', collect)
    .option('--noexec <path>', 'a path whose files never run, wherever it appears (repeatable)', collect)
    .option('--wx', 'W^X: nothing in a writable place runs (fs.execWritable: false)')
    .option('--volume <src:dst[:ro]>', 'bind a host path at another place inside (repeatable)', collect)
    .addOption(new Option('--write-mode <mode>', 'where writes go: direct, ephemeral (vanish), overlay (review, then --commit)').choices(['direct', 'ephemeral', 'overlay']))
    .option('--allow-unix-socket <path>', 'a Unix socket the sandbox may connect to (repeatable)', collect)
    .addOption(new Option('--net <mode>', 'network: none (default), loopback or host').choices(['none', 'loopback', 'host']))
    .option('--net-allow <host[:port]>', 'reachable through the allow-list proxy: name, *.domain, IP or CIDR (repeatable)', collect)
    .option('--net-deny <host[:port]>', 'refused even if allowed (repeatable)', collect)
    .option('--net-host <name=ip>', 'pin a name to an address for the proxy (repeatable)', collect)
    .option('--env <K=V>', 'set a variable (repeatable)', collect)
    .option('--inherit-env [names]', 'copy variables from this shell: a comma list, or all when no list is given')
    .option('--clear-env', 'start from a clean environment (the default, spelled out)')
    .option('--cwd <dir>', 'working directory inside the sandbox')
    .option('--hostname <name>', 'hostname inside the sandbox (default corral)')
    .option('--memory <size>', 'memory for the whole sandbox (a cgroup; per process where none), e.g. 256M')
    .option('--cpus <n>', 'share of CPUs for the whole sandbox (needs a cgroup), e.g. 0.5')
    .option('--pids <n>', 'most processes in the sandbox at once (a cgroup; per user where none)')
    .option('--nofile <n>', 'maximum open files per process')
    .option('--file-size <size>', 'largest file a process may write, e.g. 64M')
    .option('--disk <size>', 'size of the private /tmp')
    .option('--cpu-time <duration>', 'CPU time per process: seconds (10), or 1500ms, 10s, 2m')
    .option('--max-output <size>', 'cap stdout and stderr at this size each, e.g. 1M (the rest is dropped)')
    .option('--timeout <duration>', 'wall-clock limit: seconds as in timeout(1) (2), or 500ms, 5s, 2m, 1h')
    .option('--seccomp <profile>', 'seccomp profile (see `corral profiles`)')
    .option('--seccomp-allow <syscall>', 'allow a system call on top of the profile (repeatable)', collect)
    .option('--seccomp-deny <syscall>', 'refuse a system call on top of the profile (repeatable)', collect)
    .option('--strict', 'refuse to run if any rule cannot be enforced on this host');
}

/** The policy a command line asks for: its preset(s), then its policy file, then its flags. */
export function policyFromFlags(f: PolicyFlags): Policy {
  const presets = (f.preset ?? []).map((name) => preset(name));
  return mergePolicies(...presets, f.policy === undefined ? undefined : readPolicyFile(f.policy), flagsLayer(f));
}

/** A policy file: JSON holding an object. */
export function readPolicyFile(path: string): Policy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CorralError('POLICY_INVALID', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { field: 'policy' });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CorralError('POLICY_INVALID', `${path} is not JSON: ${(e as Error).message}`, { field: 'policy' });
  }
  if (!isPlainObject(value)) throw new CorralError('POLICY_INVALID', `${path} must hold a JSON object, got ${describe(value)}`, { field: 'policy' });
  return value as Policy;
}

/**
 * A bare number on the command line is seconds, as in timeout(1) and `ulimit -t`; with a
 * unit it is read by the core's duration parser like any policy duration. (In a policy
 * and in the API a number is milliseconds.)
 */
export function cliDuration(v: string): string {
  return /^\s*\d+(\.\d+)?\s*$/.test(v) ? `${v.trim()}s` : v;
}

/** What the flags alone say, as a policy layer. */
function flagsLayer(f: PolicyFlags): Policy {
  const p: Policy = {};
  const fs: NonNullable<Policy['fs']> = {};
  for (const key of ['read', 'write', 'exec', 'deny', 'protect', 'noexec'] as const) if (f[key]) fs[key] = f[key];
  if (f.wx) fs.execWritable = false;
  if (f.allowUnixSocket) fs.allowUnixSockets = f.allowUnixSocket;
  if (f.writeMode) fs.writeMode = f.writeMode as NonNullable<Policy['fs']>['writeMode'];
  if (f.volume) fs.volumes = f.volume.map(volume);
  if (Object.keys(fs).length) p.fs = fs;

  if (f.netAllow || f.netDeny || f.netHost) {
    // An allow-list runs in an empty network namespace: `--net none` says the same.
    if (f.net && f.net !== 'none') {
      throw new CorralError('POLICY_INVALID', `--net ${f.net} cannot be combined with --net-allow, --net-deny or --net-host`, { field: 'network' });
    }
    p.network = {
      ...(f.netAllow ? { allow: f.netAllow } : {}),
      ...(f.netDeny ? { deny: f.netDeny } : {}),
      ...(f.netHost ? { hosts: pairs(f.netHost, 'NAME=IP', 'network.hosts') } : {}),
    };
  } else if (f.net) {
    p.network = f.net as 'none' | 'loopback' | 'host';
  }

  if (f.env) p.env = pairs(f.env, 'K=V', 'env');
  if (f.clearEnv) p.inheritEnv = false;
  if (f.inheritEnv !== undefined) p.inheritEnv = f.inheritEnv === true ? true : String(f.inheritEnv).split(',').filter(Boolean);
  if (f.cwd) p.cwd = f.cwd;
  if (f.hostname) p.hostname = f.hostname;

  const limits: NonNullable<Policy['limits']> = {};
  if (f.memory) limits.memory = f.memory as never;
  if (f.cpus) limits.cpus = num(f.cpus, 'limits.cpus');
  if (f.pids) limits.pids = num(f.pids, 'limits.pids');
  if (f.nofile) limits.openFiles = num(f.nofile, 'limits.openFiles');
  if (f.fileSize) limits.fileSize = f.fileSize as never;
  if (f.disk) limits.disk = f.disk as never;
  if (f.cpuTime) limits.cpuTime = cliDuration(f.cpuTime) as never;
  if (f.maxOutput) limits.maxOutputBytes = f.maxOutput as never;
  if (Object.keys(limits).length) p.limits = limits;
  if (f.timeout) p.timeout = cliDuration(f.timeout) as never;

  if (f.seccompAllow || f.seccompDeny) {
    p.seccomp = {
      ...(f.seccomp ? { profile: f.seccomp as never } : {}),
      ...(f.seccompAllow ? { allow: f.seccompAllow } : {}),
      ...(f.seccompDeny ? { deny: f.seccompDeny } : {}),
    };
  } else if (f.seccomp) {
    p.seccomp = f.seccomp as never;
  }
  if (f.strict) p.strict = true;
  return p;
}

function volume(v: string): { source: string; target: string; readOnly?: boolean } {
  const parts = v.split(':');
  const mode = parts.length > 2 ? parts.pop() : undefined;
  if (parts.length !== 2 || !parts[0] || !parts[1] || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) {
    throw new CorralError('POLICY_INVALID', `expected SRC:DST or SRC:DST:ro, got ${JSON.stringify(v)}`, { field: 'fs.volumes' });
  }
  return { source: parts[0], target: parts[1], ...(mode === 'ro' ? { readOnly: true } : {}) };
}

function pairs(list: string[], form: string, field: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new CorralError('POLICY_INVALID', `expected ${form}, got ${JSON.stringify(kv)}`, { field });
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

function num(v: string, field: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new CorralError('POLICY_INVALID', `expected a number, got ${JSON.stringify(v)}`, { field });
  return n;
}
