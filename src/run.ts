import { constants } from 'node:os';
import { callAsync, callerContext, checkArgv, NativeRunOutput, policyJson } from './native';
import type { Policy } from './policy';
import type { RunOptions, RunResult } from './result';

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

export function signalName(n: number): NodeJS.Signals | null {
  return SIGNAL_NAMES.get(n) ?? null;
}

/** Shapes the native output as a `RunResult`. */
export function toResult<Out extends string | Buffer>(argv: string[], out: NativeRunOutput, decode: (b: Buffer) => Out): RunResult<Out> {
  const { info } = out;
  return {
    command: argv,
    exitCode: info.status.kind === 'exited' ? info.status.code : null,
    signal: info.status.kind === 'signaled' ? signalName(info.status.signal) : null,
    stdout: decode(out.stdout),
    stderr: decode(out.stderr),
    wallTimeMs: info.wallTimeUs / 1000,
    cpuTimeMs: { user: info.userTimeUs / 1000, system: info.systemTimeUs / 1000 },
    peakMemoryBytes: info.peakMemoryBytes,
    timedOut: info.timedOut,
    oomKilled: info.oomKilled ?? false,
    limits: info.limits ?? { rlimits: {} },
    outputTruncated: info.truncated ?? false,
    caveats: info.caveats,
    violations: (info.violations ?? []).map((v) => ({
      kind: 'network' as const,
      destination: v.destination,
      port: v.port,
      ...(v.rule ? { rule: v.rule } : {}),
      reason: v.reason,
      protocol: v.protocol,
    })),
    ...(out.captured && info.changes
      ? {
          changes: {
            files: info.changes,
            commit: async () => callAsync(() => out.captured!.commit()),
            discard: () => out.captured!.discard(),
          },
        }
      : {}),
  };
}

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
export async function run(policy: Policy, argv: string[], options: RunOptions = {}): Promise<RunResult<string | Buffer>> {
  if (options.signal) return runAbortable(policy, argv, options);
  const cmd = checkArgv(argv);
  const json = policyJson(policy);
  const input = options.input === undefined ? null : Buffer.from(options.input as Uint8Array | string);
  const out = await callAsync((b) => b.run(json, cmd, callerContext(), input, null));
  const decode: (b: Buffer) => string | Buffer = options.encoding === 'buffer' ? (b) => b : (b) => b.toString('utf8');
  return toResult(cmd, out, decode);
}

/** `run()` with an AbortSignal: the same, through `spawn()` so the sandbox can be killed. */
async function runAbortable(policy: Policy, argv: string[], options: RunOptions): Promise<RunResult<string | Buffer>> {
  const { spawn } = await import('./spawn');
  const { plan } = await import('./index');
  const cap = plan(policy).maxOutputBytes ?? Infinity;
  const p = spawn(policy, argv, { signal: options.signal, stdin: options.input === undefined ? 'ignore' : 'pipe' });
  if (options.input !== undefined) p.stdin!.end(Buffer.from(options.input as Uint8Array | string));
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
  const decode = (b: Buffer) => (options.encoding === 'buffer' ? b : b.toString('utf8'));
  return { ...r, stdout: decode(out), stderr: decode(err), outputTruncated: truncated };
}
