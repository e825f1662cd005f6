/**
 * corral: run commands in a Linux sandbox from TypeScript.
 *
 * @example
 * import { run } from 'corral';
 * const r = await run({ fs: { write: ['/tmp/work'] } }, ['sh', '-c', 'echo hi > /tmp/work/x']);
 */
import { call, callerContext, checkArgv, policyJson } from './native';
import type { Policy } from './policy';
import type { HostCapabilities, Plan, SeccompProfileInfo } from './result';

export { CorralError } from './errors';
export type { ErrorCode } from './errors';
export type { Policy, FsPolicy, Volume, NetworkPolicy, NetworkRules, Limits, SeccompPolicy, SeccompProfileName } from './policy';
export type { RunResult, RunOptions, Caveat, Violation, CapturedChanges, FileChange, HostCapabilities, Plan, MountStep, SeccompProfileInfo } from './result';
export { run } from './run';
export { spawn, SandboxProcess } from './spawn';
export { Pool, forkExec } from './pool';
export type { PoolOptions, PoolStats, PoolRunOptions } from './pool';
export type { SpawnOptions } from './spawn';
export { template, reduce, Template, Clone, pythonHelperDir } from './fork';
export type { CloneExit, CloneOutput } from './fork';

/**
 * Compiles `policy` without running anything: the resolved mount view, Landlock rules,
 * seccomp profile, limits and environment, plus every caveat where this host cannot
 * enforce a rule. Throws `CorralError` (`POLICY_INVALID` with `field`) for a bad policy,
 * and `UNSUPPORTED` in strict mode when there are caveats.
 */
export function plan(policy: Policy = {}, argv: string[] = []): Plan {
  const json = policyJson(policy);
  if (argv.length > 0) checkArgv(argv);
  const raw = call((b) => b.plan(json, argv, callerContext())) as Omit<Plan, 'sandbox'> & { spec: Plan['sandbox'] };
  const { spec, ...rest } = raw;
  return { sandbox: spec, ...rest };
}

/** What this host supports: kernel, Landlock ABI, user namespaces, seccomp, cgroups. */
export function check(): HostCapabilities {
  return call((b) => b.check()) as HostCapabilities;
}

/** The built-in seccomp profiles. */
export function profiles(): SeccompProfileInfo[] {
  return call((b) => b.profiles()) as SeccompProfileInfo[];
}
