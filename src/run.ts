// Runs in: the Node process. `run()`: one command in a new sandbox, output collected.
import type { Readable } from 'node:stream';
import { abortSignal, checkArgv, inputBytes, optionsObject, policyJson } from './arguments';
import { callAsync, callerContext } from './native';
import { Capture, decode, withDefaultOutputCap } from './output';
import { plan } from './plan';
import type { Policy } from './policy';
import { toResult, type RunOptions, type RunResult } from './result';
import { spawn } from './spawn';

/**
 * Runs `argv` in a new sandbox built from `policy` and resolves when every process of the
 * sandbox is gone. A non-zero exit code or a timeout is a result, not an error; errors
 * (`CorralError`) mean the sandbox could not be built or the command not started.
 * Each output stream is captured up to `limits.maxOutputBytes` (default 100 MiB); the
 * rest is dropped and `outputTruncated` set.
 *
 * @example
 * const r = await run({ fs: { write: ['./out'] }, timeout: '10s' }, ['make', 'test']);
 * if (r.exitCode !== 0) console.error(r.stderr);
 */
export function run(policy: Policy, argv: string[], options?: RunOptions & { encoding?: 'utf8' }): Promise<RunResult<string>>;
export function run(policy: Policy, argv: string[], options: RunOptions & { encoding: 'buffer' }): Promise<RunResult<Buffer>>;
export async function run(policy: Policy, argv: string[], options?: RunOptions): Promise<RunResult<string | Buffer>> {
  const opts = optionsObject<RunOptions>(options);
  const cmd = checkArgv(argv);
  const capped = withDefaultOutputCap(policy) as Policy;
  const json = policyJson(capped);
  const input = inputBytes(opts.input);
  const signal = abortSignal(opts.signal);
  const encoding = opts.encoding ?? 'utf8';
  if (signal) return runAbortable(capped, cmd, input, signal, encoding);
  const out = await callAsync((b) => b.run(json, cmd, callerContext(), input ?? null, null));
  return toResult(cmd, out, encoding);
}

/** `run()` with an AbortSignal: the same, through `spawn()` so the sandbox can be killed. */
async function runAbortable(policy: Policy, argv: string[], input: Buffer | undefined, signal: AbortSignal, encoding: 'utf8' | 'buffer'): Promise<RunResult<string | Buffer>> {
  const cap = plan(policy).maxOutputBytes ?? Infinity;
  const p = spawn(policy, argv, { signal, stdin: input === undefined ? 'ignore' : 'pipe' });
  if (input !== undefined) p.stdin!.end(input);
  const collect = (stream: Readable) =>
    new Promise<Capture>((resolve) => {
      const c = new Capture(cap);
      stream.on('data', (chunk: Buffer) => c.push(chunk));
      stream.on('end', () => resolve(c));
    });
  const [out, err, r] = await Promise.all([collect(p.stdout), collect(p.stderr), p.wait()]);
  let truncated = out.truncated || err.truncated;
  const text = (c: Capture): string | Buffer => {
    if (encoding === 'buffer') return c.buffer();
    const d = decode(c.buffer(), encoding);
    truncated ||= d.truncated;
    return d.text;
  };
  const stdout = text(out);
  const stderr = text(err);
  return { ...r, stdout, stderr, outputTruncated: truncated };
}
