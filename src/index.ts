/**
 * corral: run commands in a Linux sandbox from TypeScript.
 *
 * Runs in: the Node process (the package's entry point; it only re-exports).
 *
 * @example
 * import { run } from 'corral';
 * const r = await run({ fs: { write: ['/tmp/work'] } }, ['sh', '-c', 'echo hi > /tmp/work/x']);
 *
 * @packageDocumentation
 */
export { CorralError } from './errors';
export type { ErrorCode, CorralErrorDetails } from './errors';
export type { Policy, FsPolicy, Volume, NetworkPolicy, NetworkRules, Limits, SeccompPolicy, SeccompProfileName, Size, SizeUnit, Duration, DurationUnit } from './policy';
export { CommandFailedError } from './result';
export type { RunResult, RunResultBase, Exit, Output, OutputEncoding, RunOptions, StdinOption, StdoutOption, RunLimits, Caveat, Violation, CapturedChanges, FileChange, FileType } from './result';
export { CAVEAT_CODES } from './caveats';
export type { CaveatCode } from './caveats';
export { plan, check, profiles } from './plan';
export type { HostCapabilities, Plan, MountStep, NetworkRule, SeccompProfileInfo } from './plan';
export { run } from './run';
export { spawn, SandboxProcess } from './spawn';
export type { SpawnOptions, SandboxProcessEvents } from './spawn';
export { Pool, forkExec } from './pool';
export type { PoolOptions, PoolStats, PoolRunOptions } from './pool';
export { template, reduce, Template, Clone, pythonHelperDir } from './fork';
export type { CloneExit, CloneOutput, ReduceOptions, ReduceResult } from './fork';
export { presets, preset, presetDescriptions } from './presets';
export type { PresetName, PresetOptions } from './presets';
export { mergePolicies } from './merge';
export { DEFAULT_MAX_OUTPUT_BYTES } from './output';
