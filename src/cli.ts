#!/usr/bin/env node
// Runs in: the Node process started by the `corral` command.
//
// The `corral` command line. Flags mirror the policy; everything after the first word that
// is not a flag (or after `--`) is the command, for `run` and `plan` alike: both read a
// command line with the same parser. Exit status: the command's own; 124 on timeout;
// 128+N when killed by signal N; 126 / 127 when the command cannot be executed / is not
// found; 125 for everything that goes wrong in corral itself (one line on stderr).
import { Command, CommanderError } from 'commander';
import { constants } from 'node:os';
import { isatty } from 'node:tty';
import type { Readable, Writable } from 'node:stream';
import { checkArgv, policyJson } from './arguments';
import { addPolicyFlags, policyFromFlags, type PolicyFlags } from './cli-policy';
import { CorralError } from './errors';
import { formatBytes, formatDuration, printable, printableBytes } from './format';
import { callAsync, callerContext } from './native';
import { CapStream } from './output';
import { check, plan, profiles } from './plan';
import { planSummary } from './plan-summary';
import { preset, presetDescriptions } from './presets';
import type { Policy } from './policy';
import { toResult, type CapturedChanges, type FileChange, type RunResult } from './result';
import { spawn } from './spawn';

const EXIT_CORRAL = 125;
const EXIT_CANNOT_EXECUTE = 126;
const EXIT_NOT_FOUND = 127;
const EXIT_TIMEOUT = 124;

type RunFlags = PolicyFlags & { commit?: boolean; stats?: string | true; pty?: boolean };

/**
 * Prints one line for what went wrong and exits 125, unless the command itself could not
 * be executed (126) or was not found (127). The native side marks those with
 * `field: 'argv[0]'`; a failure of corral's own setup never borrows their codes, whatever
 * its errno. `CORRAL_DEBUG=1` adds the stack of an unexpected error.
 */
function fail(e: unknown): never {
  if (e instanceof CorralError) {
    process.stderr.write(`corral: ${printable(oneLine(e.message))}\n`);
    if (e.code === 'SPAWN_FAILED' && e.field === 'argv[0]') process.exit(e.errno === constants.errno.ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE);
  } else {
    const err = e instanceof Error ? e : new Error(String(e));
    process.stderr.write(`corral: internal error: ${printable(oneLine(err.message))}${process.env.CORRAL_DEBUG ? `\n${err.stack}` : ' (CORRAL_DEBUG=1 shows where)'}\n`);
  }
  process.exit(EXIT_CORRAL);
}

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim();

/** How one captured change reads in the review: kind, escaped path, type, size, mode, target. */
export function describeChange(c: FileChange): string {
  const sign = { added: 'A', modified: 'M', deleted: 'D', replaced: 'R' } as const;
  const name = c.rawPath ? printableBytes(c.rawPath) : printable(c.path);
  const what: string[] = [];
  if (c.kind === 'replaced') what.push(`${c.type} replacing a ${c.previousType}${c.previousType === 'dir' ? ' and everything in it' : ''}`);
  else if (c.kind === 'deleted') what.push(c.type === 'dir' ? 'directory and everything in it' : c.type);
  else if (c.type !== 'file') what.push(c.type === 'dir' ? 'directory' : c.type);
  if (c.type === 'file' && c.kind !== 'deleted') what.push(`${c.size} B`);
  if (c.mode !== undefined && c.kind !== 'deleted') what.push(`mode ${c.mode.toString(8).padStart(4, '0')}`);
  if (c.droppedMode) what.push(`set-id bits ${c.droppedMode.toString(8).padStart(4, '0')} dropped`);
  if (c.target !== undefined) what.push(`-> ${printable(c.target)}`);
  if (c.type === 'other' && c.kind !== 'deleted') what.push('not created on the host');
  return `${sign[c.kind]}  ${name}${c.dir ? '/' : ''}${what.length ? ` (${what.join(', ')})` : ''}`;
}

/** Prints captured changes, then commits them (--commit, or yes at the prompt) or discards them. */
async function reviewChanges(changes: CapturedChanges, commit: boolean): Promise<void> {
  const n = changes.files.length + changes.omitted;
  process.stderr.write(`corral: ${n} change${n === 1 ? '' : 's'} captured:\n`);
  for (const c of changes.files) process.stderr.write(`  ${describeChange(c)}\n`);
  if (changes.omitted) process.stderr.write(`  … and ${changes.omitted} more, not listed (a commit applies them too)\n`);
  if (changes.error !== undefined) {
    changes.discard();
    process.stderr.write(`corral: the changes could not be listed in full, so they were discarded: ${printable(changes.error)}\n`);
    return;
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

function printStats(r: RunResult<Buffer | string>, format: string | true): void {
  if (format === 'json') {
    const { stdout: _o, stderr: _e, changes: _c, ...stats } = r;
    process.stderr.write(JSON.stringify(stats) + '\n');
    return;
  }
  const how = r.signal ? `killed by ${r.signal}` : `exit ${r.exitCode}`;
  const limits = r.limits.cgroup ? 'cgroup' : 'rlimits';
  process.stderr.write(
    `corral: ${how}${r.timedOut ? ' (timed out)' : ''}${r.oomKilled ? ' (out of memory)' : ''}; ` +
      `${r.wallTimeMs.toFixed(1)} ms wall, ${r.cpuTimeMs.user.toFixed(1)} ms user, ${r.cpuTimeMs.system.toFixed(1)} ms system; ` +
      `peak memory ${formatBytes(r.peakMemoryBytes)}${r.statsEstimated.cpuTime || r.statsEstimated.peakMemory ? ' (estimates: no cgroup counted this run)' : ''}; limits by ${limits}${r.outputTruncated ? '; output truncated' : ''}\n`,
  );
}

/** Interactive mode: the command gets a terminal of the sandbox's own, relayed to ours. */
async function runInTerminal(policy: Policy, cmd: string[]): Promise<RunResult<string>> {
  const size = () => ({ cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 });
  const p = spawn(policy, cmd, { pty: size() });
  const raw = process.stdin.isTTY;
  if (raw) process.stdin.setRawMode(true);
  process.stdin.pipe(p.stdin!);
  p.stdout.pipe(process.stdout);
  const onResize = () => void p.resize(size().cols, size().rows).catch(() => undefined);
  process.stdout.on('resize', onResize);
  try {
    return await p.wait();
  } finally {
    process.stdout.off('resize', onResize);
    process.stdin.unpipe(p.stdin!);
    if (raw) process.stdin.setRawMode(false);
    process.stdin.pause();
  }
}

/**
 * An output cap: the command's stdout and stderr come through pipes and reach ours live
 * until each has passed `cap` bytes; its stdin is ours, streamed.
 */
async function runCapped(policy: Policy, cmd: string[], cap: number): Promise<RunResult<string>> {
  const p = spawn(policy, cmd, { stdin: 'pipe' });
  process.stdin.on('error', () => undefined);
  process.stdin.pipe(p.stdin!);
  const relay = (from: Readable, to: Writable) => {
    const capped = new CapStream(cap);
    from.pipe(capped).pipe(to, { end: false });
    return new Promise<CapStream>((resolve) => capped.on('end', () => resolve(capped)));
  };
  try {
    const [out, err, r] = await Promise.all([relay(p.stdout, process.stdout), relay(p.stderr, process.stderr), p.wait()]);
    return { ...r, outputTruncated: out.truncated || err.truncated };
  } finally {
    process.stdin.unpipe(p.stdin!);
    process.stdin.destroy();
  }
}

/** Without a terminal of its own: each of our streams that is a terminal is relayed
 *  through a pipe; the others are handed over as they are. */
async function runRelayed(policy: Policy, cmd: string[], terminals: boolean[]): Promise<RunResult<string>> {
  const [stdin, stdout, stderr] = terminals.map((t) => (t ? 'pipe' : 'inherit') as 'pipe' | 'inherit');
  const p = spawn(policy, cmd, { stdin, stdout, stderr });
  if (stdin === 'pipe') {
    process.stdin.on('error', () => undefined);
    p.stdin!.on('error', () => undefined);
    process.stdin.pipe(p.stdin!);
  }
  const relayed = ([[stdout, p.stdout, process.stdout], [stderr, p.stderr, process.stderr]] as const)
    .filter(([mode]) => mode === 'pipe')
    .map(([, from, to]) => new Promise<void>((resolve) => from!.on('end', resolve).pipe(to, { end: false })));
  try {
    const [r] = await Promise.all([p.wait(), ...relayed]);
    return r;
  } finally {
    if (stdin === 'pipe') {
      process.stdin.unpipe(p.stdin!);
      process.stdin.destroy();
    }
  }
}

async function runCommand(argv: string[], flags: RunFlags): Promise<number> {
  const policy = policyFromFlags(flags);
  const cmd = checkArgv(argv);
  const interactive = flags.pty ?? (process.stdin.isTTY === true && process.stdout.isTTY === true);
  if (interactive) return finishRun(await runInTerminal(policy, cmd), flags);
  const cap = policy.limits?.maxOutputBytes === undefined ? undefined : plan(policy, cmd).maxOutputBytes;
  if (cap !== undefined) {
    const r = await runCapped(policy, cmd, cap);
    if (r.outputTruncated) process.stderr.write(`corral: output truncated at ${formatBytes(cap)} per stream\n`);
    return finishRun(r, flags);
  }
  // A terminal is never handed over: it would be the caller's own terminal, whose modes,
  // size and line discipline the command could change for good. Its streams go through
  // pipes instead.
  const terminals = [0, 1, 2].map((fd) => isatty(fd));
  if (terminals.some(Boolean)) return finishRun(await runRelayed(policy, cmd, terminals), flags);
  // No cap and no terminal: the command gets our stdin, stdout and stderr themselves.
  const json = policyJson(policy);
  const out = await callAsync((b) => b.run(json, cmd, callerContext(), null, [0, 1, 2]));
  return finishRun(toResult(cmd, out), flags);
}

/** Reports what a run refused, captured and measured, and turns it into an exit status. */
async function finishRun(r: RunResult<Buffer | string>, flags: RunFlags): Promise<number> {
  if (r.violations.length) {
    const total = r.violations.reduce((n, v) => n + v.count, 0);
    const shown = r.violations.slice(0, 5).map((v) => `${printable(v.destination)}:${v.port} (${printable(v.rule ? `denied by ${v.rule}` : v.reason)})${v.count > 1 ? ` ×${v.count}` : ''}`);
    const more = r.violations.length > 5 ? `, and ${r.violations.length - 5} more` : '';
    process.stderr.write(`corral: refused ${total} network connection${total === 1 ? '' : 's'}: ${shown.join(', ')}${more}\n`);
  }
  if (r.changes) await reviewChanges(r.changes, !!flags.commit);
  if (flags.stats) printStats(r, flags.stats);
  if (r.timedOut) {
    const limit = r.limits.timeoutMs;
    process.stderr.write(`corral: timed out${limit == null ? '' : ` after ${formatDuration(limit)}`}\n`);
    return EXIT_TIMEOUT;
  }
  if (r.signal) return 128 + (constants.signals as Record<string, number>)[r.signal];
  return r.exitCode ?? EXIT_CORRAL;
}

/** Who a sandbox's command is on this host, as `corral check` says it. */
function sandboxIdentity(c: ReturnType<typeof check>): string {
  if (c.uid !== 0) return `your own uid ${c.uid} (one to one)`;
  const id = c.identity;
  if (!id?.rootMapsTo) return `host root: ${id?.detail ?? 'no unused ids'} (caveat ROOT_IDENTITY)`;
  const grants = id.idmappedMounts ? 'granted paths idmapped to stay yours' : 'no idmapped mounts: granted paths are not yours inside';
  const guard = id.setidGuard ? 'set-id files in writable grants refused' : `set-id files in writable grants not refused: ${id.setidGuardDetail ?? 'no fanotify permission events'} (caveat SETID_UNGUARDED)`;
  return `unprivileged host uid ${id.rootMapsTo.uid} / gid ${id.rootMapsTo.gid} (${id.detail ?? ''}); ${grants}; ${guard}`;
}

/** Prints what the host supports; exits 1 when no sandbox can be created here (so a script can tell). */
function printCheck(json: boolean): void {
  const c = check();
  const refused = () => {
    // Every sandbox needs user namespaces: without them there is nothing to run in.
    if (c.userNamespaces) return;
    process.stderr.write(`corral: no sandbox can be created here: ${printable(c.userNamespacesDetail ?? 'user namespaces are unavailable')}\n`);
    process.exitCode = 1;
  };
  if (json) {
    process.stdout.write(JSON.stringify(c, null, 2) + '\n');
    return refused();
  }
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const rows: [string, string][] = [
    ['os / arch', `${c.os} ${c.arch}`],
    ['kernel', c.kernel],
    ['running as', c.uid === 0 ? 'root' : `uid ${c.uid}`],
    ['sandbox identity', sandboxIdentity(c)],
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
  refused();
}

/**
 * Commander's errors as one line, the way git answers a typo: `corral run: unknown option
 * '--wirte'; did you mean --write?`, not the whole help.
 */
function oneLineErrors(cmd: Command): Command {
  const name = cmd.name() === 'corral' ? 'corral' : `corral ${cmd.name()}`;
  return cmd.configureOutput({
    outputError: (text, write) => {
      const [what, ...rest] = text.replace(/^error: /, '').trim().split('\n');
      const suggestion = /\(Did you mean (.+)\?\)/.exec(rest.join(' '))?.[1];
      write(`${name}: ${what}${suggestion ? `; did you mean ${suggestion}?` : ` (see ${name} --help)`}\n`);
    },
  });
}

/**
 * `run` and `plan`: the policy flags, then the command. One builder for both, so that a
 * command line means the same to each: options after the command's first word belong to
 * the command (as with sudo, env or timeout).
 */
function sandboxCommand(prog: Command, name: string, description: string, command: string): Command {
  return oneLineErrors(addPolicyFlags(prog.command(name).description(description).argument(command, 'the command and its arguments (after --, or after the last flag)').passThroughOptions()));
}

export function program(): Command {
  const prog = oneLineErrors(
    new Command('corral')
      .description('Run commands in a Linux sandbox: namespaces, Landlock, seccomp, limits.')
      .version(require('../package.json').version)
      .enablePositionalOptions()
      .exitOverride((err: CommanderError) => process.exit(err.exitCode === 0 ? 0 : EXIT_CORRAL)),
  );

  sandboxCommand(prog, 'run', 'run a command in a sandbox: corral run [flags] -- command [args...]', '<command...>')
    .option('--commit', 'with --write-mode overlay: apply the captured changes without asking')
    .option('--stats [format]', 'print run statistics on stderr afterwards (human, or --stats=json)')
    .option('--pty', 'give the command a terminal of its own (the default when stdin and stdout are terminals)')
    .option('--no-pty', 'never give the command a terminal')
    .action(async (argv: string[], flags: RunFlags) => {
      try {
        process.exitCode = await runCommand(argv, flags);
      } catch (e) {
        fail(e);
      }
    });

  sandboxCommand(prog, 'plan', 'show what a policy becomes on this host, and its caveats, without running anything', '[command...]')
    .option('--json', 'print the whole plan as JSON (for tools)')
    .action((argv: string[], flags: PolicyFlags & { json?: boolean }) => {
      try {
        const p = plan(policyFromFlags(flags), argv);
        process.stdout.write(flags.json ? JSON.stringify(p, null, 2) + '\n' : planSummary(p).join('\n') + '\n');
      } catch (e) {
        fail(e);
      }
    });

  oneLineErrors(prog.command('check'))
    .description('show what this host supports (kernel, Landlock, user namespaces, seccomp, cgroups); exits 1 when no sandbox can be created here')
    .option('--json', 'print JSON')
    .action((flags: { json?: boolean }) => {
      try {
        printCheck(!!flags.json);
      } catch (e) {
        fail(e);
      }
    });

  oneLineErrors(prog.command('profiles'))
    .description('list the seccomp profiles')
    .action(() => {
      try {
        for (const p of profiles()) process.stdout.write(`${p.name.padEnd(10)}  ${p.description}\n`);
      } catch (e) {
        fail(e);
      }
    });

  oneLineErrors(prog.command('presets'))
    .description('list the presets (--preset NAME) and what each grants here')
    .option('--json', 'print each preset as its policy, in JSON')
    .action((flags: { json?: boolean }) => {
      try {
        printPresets(!!flags.json);
      } catch (e) {
        fail(e);
      }
    });

  return prog;
}

/** Each preset, what it is for, and the policy it comes to on this machine. */
function printPresets(json: boolean): void {
  const list = presetDescriptions().map((p) => ({ ...p, policy: preset(p.name) }));
  if (json) {
    process.stdout.write(JSON.stringify(Object.fromEntries(list.map((p) => [p.name, p.policy])), null, 2) + '\n');
    return;
  }
  for (const p of list) {
    process.stdout.write(`${p.name}\n  ${p.description}\n`);
    for (const line of policyLines(p.policy)) process.stdout.write(`    ${line}\n`);
  }
}

/** A policy as short `key  values` lines. */
function policyLines(p: Policy): string[] {
  const lines: string[] = [];
  const add = (k: string, v: unknown) => {
    if (v === undefined || (Array.isArray(v) && v.length === 0)) return;
    const text = Array.isArray(v) ? v.join(' ') : typeof v === 'object' ? JSON.stringify(v) : String(v);
    lines.push(`${k.padEnd(15)}${text}`);
  };
  for (const [k, v] of Object.entries(p.fs ?? {})) add(`fs.${k}`, v);
  if (typeof p.network === 'object') {
    add('network.allow', p.network.allow?.length ? p.network.allow : ['(nothing)']);
    add('network.deny', p.network.deny);
  } else add('network', p.network);
  for (const k of ['env', 'inheritEnv', 'cwd', 'seccomp', 'limits', 'timeout', 'strict'] as const) add(k, p[k]);
  return lines;
}

if (require.main === module) {
  program().parseAsync(process.argv).catch(fail);
}
