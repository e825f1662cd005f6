// Runs in: the Node process. `run()`: one command in a new sandbox, its output collected.
import { closeSync, openSync } from 'node:fs';
import { abortSignal, checkArgv, inputBytes, optionsObject, policyJson } from './arguments';
import { CorralError } from './errors';
import { callAsync, callerContext } from './native';
import { withDefaultOutputCap } from './output';
import type { Policy } from './policy';
import { present, settle, toResult, type Output, type RunOptions, type RunResult } from './result';
import { spawn } from './spawn';

/**
 * Runs `argv` in a new sandbox built from `policy` and resolves when every process of the
 * sandbox is gone. A non-zero exit code, a signal or a timeout is a result (`failed` is
 * true), not an error, unless `reject: true`. Each captured stream is kept up to
 * `limits.maxOutputBytes` (default 100 MiB); the rest is dropped and `outputTruncated` set.
 *
 * @example
 * const r = await run({ fs: { write: ['./out'] }, timeout: '10s' }, ['make', 'test']);
 * if (r.failed) console.error(r.stderr);
 * @throws {CorralError} `POLICY_INVALID` (with `field`) for a bad policy, command or option;
 * `SPAWN_FAILED` when the sandbox could not be built or the command not started (`field`
 * `argv[0]` and `errno` for a command that cannot be executed); `UNSUPPORTED` when this
 * host cannot run sandboxes or strict mode refused a caveat; `ABORTED` after `signal`;
 * `COMMAND_FAILED` (a `CommandFailedError`) with `reject: true`.
 */
export function run(policy: Policy, argv: readonly string[], options: RunOptions & { encoding: 'buffer' }): Promise<RunResult<Buffer>>;
export function run(policy: Policy, argv: readonly string[], options: RunOptions & { lines: true }): Promise<RunResult<string[]>>;
export function run(policy: Policy, argv: readonly string[], options?: RunOptions & { encoding?: BufferEncoding; lines?: false }): Promise<RunResult<string>>;
export function run(policy: Policy, argv: readonly string[], options?: RunOptions): Promise<RunResult<Output>>;
export async function run(policy: Policy, argv: readonly string[], options?: RunOptions): Promise<RunResult<Output>> {
  const opts = optionsObject<RunOptions>(options);
  const cmd = checkArgv(argv);
  const capped = withDefaultOutputCap(policy) as Policy;
  const json = policyJson(capped);
  const input = inputBytes(opts.input);
  const signal = abortSignal(opts.signal);
  const how = { encoding: opts.encoding ?? 'utf8', lines: opts.lines === true };
  const stdin = opts.stdin ?? (input === undefined ? 'ignore' : 'pipe');
  const [stdout, stderr] = [opts.stdout ?? 'pipe', opts.stderr ?? 'pipe'];
  if (input !== undefined && stdin !== 'pipe') throw new CorralError('POLICY_INVALID', "input needs stdin: 'pipe'", { field: 'stdin' });

  // The command's output to our pipes, collected natively: the common case, and the fastest.
  if (!signal && !opts.all && stdout === 'pipe' && stderr === 'pipe' && (stdin === 'ignore' || input !== undefined)) {
    if (how.lines && how.encoding === 'buffer') throw new CorralError('POLICY_INVALID', "lines need a text encoding, not 'buffer'", { field: 'lines' });
    if (how.encoding !== 'buffer' && !Buffer.isEncoding(how.encoding)) throw new CorralError('POLICY_INVALID', `not an encoding: ${String(how.encoding)}`, { field: 'encoding' });
    const out = await callAsync((b) => b.run(json, cmd, callerContext(), input ?? null, null));
    return settle(present(toResult(cmd, out), how), opts.reject);
  }

  // Nothing to collect: the command gets descriptors of ours (or /dev/null) directly.
  const fds = [stdin, stdout, stderr].map(descriptor);
  if (!signal && !opts.all && fds.every((fd) => fd !== undefined)) {
    const opened = fds.map((fd, i) => (fd === 'null' ? openSync('/dev/null', i === 0 ? 'r' : 'w') : fd)) as number[];
    try {
      const out = await callAsync((b) => b.run(json, cmd, callerContext(), null, opened));
      return settle(present(toResult(cmd, out), how), opts.reject);
    } finally {
      fds.forEach((fd, i) => fd === 'null' && closeSync(opened[i]));
    }
  }

  // Streams, interleaving or cancellation: through spawn(), collecting on the way.
  const p = spawn(capped, cmd, { stdin, stdout, stderr, signal, buffer: true, encoding: how.encoding, lines: how.lines, all: opts.all === true });
  if (input !== undefined) p.stdin!.end(input);
  return settle(await p.wait(), opts.reject);
}

/** The descriptor a stdio choice names without relaying: ours, `'null'` for /dev/null, else undefined. */
function descriptor(choice: unknown, index: number): number | 'null' | undefined {
  if (choice === 'inherit') return index;
  if (choice === 'ignore') return 'null';
  if (typeof choice === 'number' && Number.isInteger(choice) && choice >= 0) return choice;
  return undefined;
}
