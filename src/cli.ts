#!/usr/bin/env node
// Runs in: the Node process started by the `corral` command.
// The `corral` command line. Flags mirror the policy;
// everything after `--` is the command. Exit status: the command's own; 124 on timeout;
// 128+N when killed by signal N; 125 for corral's own errors (one line on stderr); 126 /
// 127 when the command cannot be executed / is not found.
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { checkArgv, policyJson } from './arguments';
import { CorralError } from './errors';
import { callAsync, callerContext } from './native';
import { check, plan, profiles } from './plan';
import type { Policy } from './policy';
import { toResult, type RunResult } from './result';

const EXIT_CORRAL = 125;
const EXIT_TIMEOUT = 124;

const collect = (value: string, previous: string[] = []) => [...previous, value];

interface PolicyFlags {
  policy?: string;
  read?: string[];
  write?: string[];
  exec?: string[];
  deny?: string[];
  protect?: string[];
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

function addPolicyFlags(cmd: Command): Command {
  return cmd
    .option('--policy <file>', 'read a JSON policy file (flags add to it)')
    .option('--read <path>', 'read-only path (repeatable)', collect)
    .option('--write <path>', 'read-write path (repeatable)', collect)
    .option('--exec <path>', 'path whose files may be executed (repeatable)', collect)
    .option('--deny <path>', 'hide a path inside readable trees, e.g. ~/.ssh (repeatable)', collect)
    .option('--protect <path>', 'keep a path read-only inside writable trees, e.g. .git/hooks (repeatable)', collect)
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
    .option('--cpu-time <duration>', 'CPU time per process, e.g. 10s')
    .option('--max-output <size>', 'capture output and cap each stream at this size')
    .option('--timeout <duration>', 'wall-clock limit, e.g. 500ms, 5s, 2m')
    .option('--seccomp <profile>', 'seccomp profile (see `corral profiles`)')
    .option('--seccomp-allow <syscall>', 'allow a system call on top of the profile (repeatable)', collect)
    .option('--seccomp-deny <syscall>', 'refuse a system call on top of the profile (repeatable)', collect)
    .option('--strict', 'refuse to run if any rule cannot be enforced on this host');
}

/** Builds a Policy from a policy file plus flags; flags add to lists and override scalars. */
export function policyFromFlags(f: PolicyFlags): Policy {
  let p: Policy = {};
  if (f.policy) {
    try {
      p = JSON.parse(readFileSync(f.policy, 'utf8')) as Policy;
    } catch (e) {
      throw new CorralError('POLICY_INVALID', `cannot read ${f.policy}: ${(e as Error).message}`, { field: 'policy' });
    }
  }
  const fs = { ...(p.fs ?? {}) };
  for (const key of ['read', 'write', 'exec', 'deny', 'protect'] as const) {
    if (f[key]) fs[key] = [...(fs[key] ?? []), ...f[key]!];
  }
  if (f.allowUnixSocket) fs.allowUnixSockets = [...(fs.allowUnixSockets ?? []), ...f.allowUnixSocket];
  if (f.writeMode) fs.writeMode = f.writeMode as 'direct' | 'ephemeral' | 'overlay';
  for (const v of f.volume ?? []) {
    const parts = v.split(':');
    const mode = parts.length > 2 ? parts.pop() : undefined;
    if (parts.length !== 2 || !parts[0] || !parts[1] || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) {
      throw new CorralError('POLICY_INVALID', `expected SRC:DST or SRC:DST:ro, got ${JSON.stringify(v)}`, { field: 'fs.volumes' });
    }
    fs.volumes = [...(fs.volumes ?? []), { source: parts[0], target: parts[1], ...(mode === 'ro' ? { readOnly: true } : {}) }];
  }
  if (Object.keys(fs).length) p.fs = fs;
  if (f.net) p.network = f.net as Policy['network'];
  if (f.netAllow || f.netDeny || f.netHost) {
    if (f.net && f.net !== 'none') {
      throw new CorralError('POLICY_INVALID', `--net ${f.net} cannot be combined with --net-allow/--net-deny`, { field: 'network' });
    }
    const base = typeof p.network === 'object' ? p.network : {};
    const hosts = { ...(base.hosts ?? {}) };
    for (const kv of f.netHost ?? []) {
      const i = kv.indexOf('=');
      if (i <= 0) throw new CorralError('POLICY_INVALID', `expected NAME=IP, got ${JSON.stringify(kv)}`, { field: 'network.hosts' });
      hosts[kv.slice(0, i)] = kv.slice(i + 1);
    }
    p.network = { ...base, allow: [...(base.allow ?? []), ...(f.netAllow ?? [])], deny: [...(base.deny ?? []), ...(f.netDeny ?? [])], hosts };
  }
  if (f.env) {
    const env = { ...(p.env ?? {}) };
    for (const kv of f.env) {
      const i = kv.indexOf('=');
      if (i <= 0) throw new CorralError('POLICY_INVALID', `expected K=V, got ${JSON.stringify(kv)}`, { field: 'env' });
      env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    p.env = env;
  }
  if (f.clearEnv) p.inheritEnv = false;
  if (f.inheritEnv !== undefined) p.inheritEnv = f.inheritEnv === true ? true : String(f.inheritEnv).split(',').filter(Boolean);
  if (f.cwd) p.cwd = f.cwd;
  if (f.hostname) p.hostname = f.hostname;
  const limits = { ...(p.limits ?? {}) };
  const num = (v: string, field: string) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new CorralError('POLICY_INVALID', `expected a number, got ${JSON.stringify(v)}`, { field });
    return n;
  };
  if (f.memory) limits.memory = f.memory;
  if (f.cpus) limits.cpus = num(f.cpus, 'limits.cpus');
  if (f.pids) limits.pids = num(f.pids, 'limits.pids');
  if (f.nofile) limits.openFiles = num(f.nofile, 'limits.openFiles');
  if (f.fileSize) limits.fileSize = f.fileSize;
  if (f.disk) limits.disk = f.disk;
  if (f.cpuTime) limits.cpuTime = f.cpuTime;
  if (f.maxOutput) limits.maxOutputBytes = f.maxOutput;
  if (Object.keys(limits).length) p.limits = limits;
  if (f.timeout) p.timeout = f.timeout;
  if (f.seccomp || f.seccompAllow || f.seccompDeny) {
    const base = typeof p.seccomp === 'string' ? { profile: p.seccomp } : { ...(p.seccomp ?? {}) };
    if (f.seccomp) base.profile = f.seccomp as never;
    if (f.seccompAllow) base.allow = [...(base.allow ?? []), ...f.seccompAllow];
    if (f.seccompDeny) base.deny = [...(base.deny ?? []), ...f.seccompDeny];
    p.seccomp = base;
  }
  if (f.strict) p.strict = true;
  return p;
}

function fail(e: unknown): never {
  if (e instanceof CorralError) {
    process.stderr.write(`corral: ${e.message}\n`);
    if (e.code === 'SPAWN_FAILED' && e.errno === 2) process.exit(127);
    if (e.code === 'SPAWN_FAILED' && e.errno === 13) process.exit(126);
  } else {
    process.stderr.write(`corral: ${(e as Error)?.stack ?? String(e)}\n`);
  }
  process.exit(EXIT_CORRAL);
}

/** Prints captured changes, then commits them (--commit, or yes at the prompt) or discards them. */
async function reviewChanges(changes: NonNullable<RunResult<Buffer>['changes']>, commit: boolean): Promise<void> {
  const sign = { added: 'A', modified: 'M', deleted: 'D' } as const;
  const n = changes.files.length;
  process.stderr.write(`corral: ${n} change${n === 1 ? '' : 's'} captured:\n`);
  for (const c of changes.files) {
    process.stderr.write(`  ${sign[c.kind]}  ${c.path}${c.dir ? '/' : ''}${c.kind === 'deleted' || c.dir ? '' : ` (${c.size} B)`}\n`);
  }
  if (n === 0) return changes.discard();
  let apply = commit;
  if (!commit && process.stdin.isTTY && process.stderr.isTTY) {
    const { createInterface } = await import('node:readline/promises');
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    apply = /^y(es)?$/i.test((await rl.question('corral: apply these changes to the host? [y/N] ')).trim());
    rl.close();
  }
  if (apply) {
    await changes.commit();
    process.stderr.write('corral: changes applied\n');
  } else {
    changes.discard();
    process.stderr.write('corral: changes discarded (rerun with --commit to apply them)\n');
  }
}

function printStats(r: RunResult<Buffer>, format: string | true): void {
  if (format === 'json') {
    const { stdout: _o, stderr: _e, changes: _c, ...stats } = r;
    process.stderr.write(JSON.stringify(stats) + '\n');
    return;
  }
  const mb = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
  const how = r.signal ? `killed by ${r.signal}` : `exit ${r.exitCode}`;
  const limits = r.limits.cgroup ? 'cgroup' : 'rlimits';
  process.stderr.write(
    `corral: ${how}${r.timedOut ? ' (timed out)' : ''}${r.oomKilled ? ' (out of memory)' : ''}; ` +
      `${r.wallTimeMs.toFixed(1)} ms wall, ${r.cpuTimeMs.user.toFixed(1)} ms user, ${r.cpuTimeMs.system.toFixed(1)} ms system; ` +
      `peak memory ${mb(r.peakMemoryBytes)}; limits by ${limits}${r.outputTruncated ? '; output truncated' : ''}\n`,
  );
}

/** Interactive mode: the command gets a terminal of the sandbox's own, relayed to ours. */
async function runInTerminal(policy: Policy, cmd: string[]): Promise<RunResult<Buffer>> {
  const { spawn } = await import('./spawn');
  const size = () => ({ cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 });
  const p = spawn(policy, cmd, { pty: size() });
  const raw = process.stdin.isTTY;
  if (raw) process.stdin.setRawMode(true);
  process.stdin.pipe(p.stdin!);
  p.stdout.pipe(process.stdout);
  const onResize = () => void p.resize(size().cols, size().rows).catch(() => undefined);
  process.stdout.on('resize', onResize);
  try {
    return (await p.wait()) as unknown as RunResult<Buffer>;
  } finally {
    process.stdout.off('resize', onResize);
    process.stdin.unpipe(p.stdin!);
    if (raw) process.stdin.setRawMode(false);
    process.stdin.pause();
  }
}

async function runCommand(argv: string[], flags: PolicyFlags & { commit?: boolean; stats?: string | true; pty?: boolean }): Promise<number> {
  const policy = policyFromFlags(flags);
  const cmd = checkArgv(argv);
  const interactive = flags.pty ?? (process.stdin.isTTY === true && process.stdout.isTTY === true);
  if (interactive) return finishRun(await runInTerminal(policy, cmd), policy, flags);
  const json = policyJson(policy);
  // Without an output cap the command writes straight to our stdio; with one, we capture.
  const capture = flags.maxOutput !== undefined;
  const out = await callAsync((b) => b.run(json, cmd, callerContext(), null, capture ? null : [0, 1, 2]));
  const r = toResult(cmd, out, (b) => b);
  if (capture) {
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    if (r.outputTruncated) process.stderr.write(`corral: output truncated at ${flags.maxOutput}\n`);
  }
  return finishRun(r, policy, flags);
}

/** Reports what a run refused, captured and measured, and turns it into an exit status. */
async function finishRun(r: RunResult<Buffer>, policy: Policy, flags: PolicyFlags & { commit?: boolean; stats?: string | true }): Promise<number> {
  if (r.violations.length) {
    const shown = r.violations.slice(0, 5).map((v) => `${v.destination}:${v.port} (${v.rule ? `denied by ${v.rule}` : v.reason})`);
    const more = r.violations.length > 5 ? `, and ${r.violations.length - 5} more` : '';
    process.stderr.write(`corral: refused ${r.violations.length} network connection${r.violations.length === 1 ? '' : 's'}: ${shown.join(', ')}${more}\n`);
  }
  if (r.changes) await reviewChanges(r.changes, !!flags.commit);
  if (flags.stats) printStats(r, flags.stats);
  if (r.timedOut) {
    process.stderr.write(`corral: timed out after ${flags.timeout ?? policy.timeout}\n`);
    return EXIT_TIMEOUT;
  }
  if (r.signal) return 128 + (constants.signals as Record<string, number>)[r.signal];
  return r.exitCode ?? EXIT_CORRAL;
}

function printCheck(json: boolean): void {
  const c = check();
  if (json) {
    process.stdout.write(JSON.stringify(c, null, 2) + '\n');
    return;
  }
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const rows: [string, string][] = [
    ['os / arch', `${c.os} ${c.arch}`],
    ['kernel', c.kernel],
    ['running as', c.uid === 0 ? 'root' : `uid ${c.uid}`],
    ['user namespaces', c.userNamespaces ? 'yes' : `no: ${c.userNamespacesDetail ?? ''}`],
    ['Landlock ABI', c.landlockAbi ? String(c.landlockAbi) : 'unavailable'],
    ['seccomp', `${yes(c.seccomp)}${c.seccompUserNotif ? ' (user notification too)' : ''}`],
    ['mount API', yes(c.mountApi)],
    ['overlayfs', yes(c.overlayInUserns)],
    ['pidfd', yes(c.pidfd)],
    ['cgroups', `${c.cgroup.version}${c.cgroup.unifiedMount ? ` (v2 at ${c.cgroup.unifiedMount})` : ''}`],
    ['cgroup controllers', c.cgroup.controllers.join(', ') || 'none'],
    ['cgroups writable', yes(c.cgroup.writable)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(width)}  ${v}\n`);
}

export function program(): Command {
  const prog = new Command('corral')
    .description('Run commands in a Linux sandbox: namespaces, Landlock, seccomp, limits.')
    .version(require('../package.json').version)
    .enablePositionalOptions()
    .showHelpAfterError()
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_CORRAL));

  addPolicyFlags(
    prog
      .command('run')
      .description('run a command in a sandbox: corral run [flags] -- command [args...]')
      .argument('<command...>', 'the command and its arguments (after --)')
      .option('--commit', 'with --write-mode overlay: apply the captured changes without asking')
      .option('--stats [format]', 'print run statistics on stderr afterwards (human, or --stats=json)')
      .option('--pty', 'give the command a terminal of its own (the default when stdin and stdout are terminals)')
      .option('--no-pty', 'never give the command a terminal')
      .passThroughOptions(),
  ).action(async (argv: string[], flags: PolicyFlags & { commit?: boolean; stats?: string | true; pty?: boolean }) => {
    try {
      process.exitCode = await runCommand(argv, flags);
    } catch (e) {
      fail(e);
    }
  });

  addPolicyFlags(
    prog
      .command('plan')
      .description('show what a policy becomes on this host, and its caveats, without running anything')
      .argument('[command...]', 'optional command (after --)'),
  ).action((argv: string[], flags: PolicyFlags) => {
    try {
      process.stdout.write(JSON.stringify(plan(policyFromFlags(flags), argv), null, 2) + '\n');
    } catch (e) {
      fail(e);
    }
  });

  prog
    .command('check')
    .description('show what this host supports (kernel, Landlock, user namespaces, seccomp, cgroups)')
    .option('--json', 'print JSON')
    .action((flags: { json?: boolean }) => {
      try {
        printCheck(!!flags.json);
      } catch (e) {
        fail(e);
      }
    });

  prog
    .command('profiles')
    .description('list the seccomp profiles')
    .action(() => {
      for (const p of profiles()) process.stdout.write(`${p.name.padEnd(10)}  ${p.description}\n`);
    });

  return prog;
}

if (require.main === module) {
  program().parseAsync(process.argv).catch(fail);
}
