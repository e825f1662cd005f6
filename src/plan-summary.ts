// Runs in: the Node process started by the `corral` command. A compiled plan as a page a
// person can read: what the command sees, may do and may use, and what this host cannot
// enforce. `corral plan --json` prints the plan itself for tools.
import { formatBytes, formatDuration } from './format';
import type { MountStep, NetworkRule, Plan } from './plan';

/** The lines of the summary, without trailing newlines. */
export function planSummary(plan: Plan): string[] {
  const s = plan.sandbox;
  const out: string[] = [];
  const row = (k: string, v: string) => out.push(`${k.padEnd(12)}${v}`);
  const more = (v: string) => out.push(`${' '.repeat(12)}${v}`);

  if (s.argv.length) row('command', s.argv.map(shellWord).join(' '));
  row('directory', s.cwd);
  row('user', s.uid === 0 ? 'root inside its own user namespace, every capability dropped' : `uid ${s.uid}, gid ${s.gid}`);
  if (s.identity) {
    more(`on the host: uid ${s.identity.hostUid}, gid ${s.identity.hostGid} (unprivileged, not root)`);
    if (s.identity.idmapped.length) more(`idmapped, your files there stay yours: ${s.identity.idmapped.join(' ')}`);
  } else if (s.uid === 0) {
    more("on the host: root (no unprivileged ids; see the caveats)");
  }
  row('hostname', s.hostname);
  row('environment', Object.keys(s.env).sort().join(' ') || '(empty)');

  const net = s.network;
  if (net === 'isolated') row('network', 'none: an empty network namespace with loopback only');
  else if (net === 'host') row('network', "the host's network");
  else row('network', `allow-list through corral's proxy (HTTP and HTTPS_PROXY on port ${net.proxied.httpPort}, SOCKS5 on ${net.proxied.socksPort})`);
  if (plan.network) {
    const rules = (list: NetworkRule[]) => list.map((r) => `${r.rule} (${r.matches}${r.port === undefined ? '' : `, port ${r.port}`})`).join(', ');
    more(`allow  ${rules(plan.network.allow) || '(nothing)'}`);
    if (plan.network.deny.length) more(`deny   ${rules(plan.network.deny)}`);
    for (const [name, ips] of Object.entries(plan.network.hosts)) more(`host   ${name} = ${ips.join(', ')}`);
  }
  const ports = [
    ['bind', s.landlock.bindPorts],
    ['connect', s.landlock.connectPorts],
  ] as const;
  for (const [what, list] of ports) if (list) more(`TCP ${what} only to port${list.length === 1 ? '' : 's'} ${list.join(', ') || '(none)'}`);

  row('mounts', `${s.mounts.length} steps on an empty root`);
  for (const m of s.mounts) more(mountLine(m));

  row('landlock', s.landlock.abi ? `ABI ${s.landlock.abi}${s.landlock.scoped ? ', abstract sockets and signals scoped' : ''}; ${s.landlock.rules.length} rules` : 'unavailable on this host');
  const byAccess = new Map<string, string[]>();
  for (const r of s.landlock.rules) {
    const a = r.access;
    const key = [a.read && 'read', a.list && 'list', a.write && 'write', a.exec && 'exec', a.ioctl && 'ioctl'].filter(Boolean).join('+');
    byAccess.set(key, [...(byAccess.get(key) ?? []), r.path]);
  }
  for (const [access, paths] of byAccess) more(`${access.padEnd(22)}${paths.join(' ')}`);

  const sc = s.seccomp;
  const counts = plan.seccompCounts;
  const what = !counts
    ? ''
    : counts.allowed !== undefined
      ? `allows ${counts.allowed} system calls and refuses the rest`
      : `refuses ${counts.refused} system calls outright`;
  row('seccomp', `profile ${sc.profile}${what ? `: ${what}` : ''}`);
  if (counts?.argumentChecked.length) more(`checks the arguments of ${counts.argumentChecked.join(', ')}`);
  if (sc.allow.length) more(`also allowed: ${sc.allow.join(' ')}`);
  if (sc.deny.length) more(`also refused: ${sc.deny.join(' ')}`);

  const limits: string[] = [];
  const cg = s.cgroup ?? {};
  const rl = s.rlimits;
  if (cg.memory !== undefined) limits.push(`memory ${formatBytes(cg.memory)} for the tree (cgroup)`);
  if (rl.addressSpace !== undefined) limits.push(`address space ${formatBytes(rl.addressSpace)} per process`);
  if (cg.cpus !== undefined) limits.push(`${cg.cpus} CPUs (cgroup)`);
  if (cg.pids !== undefined) limits.push(`${cg.pids} processes (cgroup)`);
  if (rl.processes !== undefined) limits.push(`${rl.processes} processes (RLIMIT_NPROC, counted per sandbox)`);
  if (rl.openFiles !== undefined) limits.push(`${rl.openFiles} open files`);
  if (rl.fileSize !== undefined) limits.push(`files up to ${formatBytes(rl.fileSize)}`);
  if (rl.cpuSeconds !== undefined) limits.push(`${rl.cpuSeconds} s CPU per process`);
  if (s.timeoutMs !== undefined) limits.push(`timeout ${formatDuration(s.timeoutMs)}`);
  if (plan.maxOutputBytes !== undefined) limits.push(`output capped at ${formatBytes(plan.maxOutputBytes)} per stream`);
  limits.push(`${formatBytes(s.scratch.size)} of memory-backed files (/tmp, /dev/shm${s.overlay ? ', overlay layers' : ''})`);
  row('limits', limits.length ? limits[0] : 'none');
  for (const l of limits.slice(1)) more(l);

  row('caveats', plan.caveats.length ? `${plan.caveats.length}: what this host cannot enforce` : 'none: every rule holds on this host');
  for (const c of plan.caveats) more(`${c.code}${c.field ? ` (${c.field})` : ''}: ${c.message}`);
  row('strict', plan.strict ? 'yes: a caveat refuses the run' : 'no');
  return out;
}

function mountLine(m: MountStep): string {
  switch (m.type) {
    case 'bind':
      return `${m.writable ? 'rw' : 'ro'}${m.exec ? '+exec' : ''}`.padEnd(10) + (m.source === m.target ? m.target : `${m.target} <- ${m.source}`);
    case 'overlay':
      return `overlay${m.exec ? '+exec' : ''}`.padEnd(10) + `${m.target} (writes held aside; lower ${m.lower})`;
    case 'tmpfs':
      return `tmpfs${m.exec ? '+exec' : ''}`.padEnd(10) + m.target;
    case 'proc':
      return 'proc'.padEnd(10) + m.target;
    case 'dev':
      return 'dev'.padEnd(10) + `${m.target} (null, zero, full, random, urandom, tty, a private pts, shm${m.shmExec ? '+exec' : ''})`;
    case 'symlink':
      return 'symlink'.padEnd(10) + `${m.link} -> ${m.target}`;
    case 'mask':
      return 'hidden'.padEnd(10) + m.target;
    case 'pin': {
      const how = [m.readOnly ? 'read-only' : '', m.exec === true ? 'runs programs' : m.exec === false ? 'noexec' : ''].filter(Boolean);
      return 'pinned'.padEnd(10) + `${m.target}${how.length ? ` (${how.join(', ')})` : ''}`;
    }
  }
}

function shellWord(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}
