// Runs in: the Node process. `run()`: one command in a new sandbox, output collected.
import { abortSignal, checkArgv, inputBytes, optionsObject, policyJson } from './arguments';
import { callAsync, callerContext } from './native';
import { plan } from './plan';
import type { Policy } from './policy';
import { toResult, type RunOptions, type RunResult } from './result';
import { spawn } from './spawn';

/**
 * Runs `argv` in a new sandbox built from `policy` and resolves when every process of the
 * sandbox is gone. A non-zero exit code or a timeout is a result, not an error; errors
 * (`CorralError`) mean the sandbox could not be built or the command not started.
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
  const json = policyJson(policy);
  const input = inputBytes(opts.input);
  const signal = abortSignal(opts.signal);
  if (signal) return runAbortable(policy, cmd, input, signal, opts.encoding);
  const out = await callAsync((b) => b.run(json, cmd, callerContext(), input ?? null, null));
  const decode: (b: Buffer) => string | Buffer = opts.encoding === 'buffer' ? (b) => b : (b) => b.toString('utf8');
  return toResult(cmd, out, decode);
}

/** `run()` with an AbortSignal: the same, through `spawn()` so the sandbox can be killed. */
async function runAbortable(policy: Policy, argv: string[], input: Buffer | undefined, signal: AbortSignal, encoding: RunOptions['encoding']): Promise<RunResult<string | Buffer>> {
  const cap = plan(policy).maxOutputBytes ?? Infinity;
  const p = spawn(policy, argv, { signal, stdin: input === undefined ? 'ignore' : 'pipe' });
  if (input !== undefined) p.stdin!.end(input);
  let truncated = false;
  const collect = (stream: NodeJS.ReadableStream) =>
    new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (c: Buffer) => {
        const room = cap - size;
        if (c.length > room) truncated = true;
        if (room > 0) chunks.push(room < c.length ? c.subarray(0, room) : c);
        size += Math.min(c.length, Math.max(room, 0));
      });
      stream.on('end', () => resolve(Buffer.concat(chunks)));
    });
  const [out, err, r] = await Promise.all([collect(p.stdout), collect(p.stderr), p.wait()]);
  const decode = (b: Buffer) => (encoding === 'buffer' ? b : b.toString('utf8'));
  return { ...r, stdout: decode(out), stderr: decode(err), outputTruncated: truncated };
}
