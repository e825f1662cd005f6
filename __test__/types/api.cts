// The TypeScript surface, type-checked from CommonJS (see tsconfig.json beside this file).
import { Readable, Writable } from 'node:stream';
import {
  CAVEAT_CODES,
  CommandFailedError,
  CorralError,
  Pool,
  forkExec,
  mergePolicies,
  plan,
  presets,
  reduce,
  run,
  spawn,
  template,
  type CaveatCode,
  type Duration,
  type Policy,
  type PoolRunOptions,
  type RunOptions,
  type RunResult,
  type Size,
  type SpawnOptions,
} from '../../dist/index.js';

async function api(signal: AbortSignal): Promise<void> {
  // Options declared with their own type, and readonly arrays everywhere.
  const o: RunOptions = {};
  const general = await run({}, ['true'], o);
  const out: string | Buffer | string[] = general.stdout;
  const argv: readonly string[] = ['ls', '-l'];
  const reads: readonly string[] = ['/usr'];
  const policy: Policy = { fs: { read: reads, deny: ['~/.ssh'] as const }, network: { allow: ['a.test'] as const }, inheritEnv: ['CI'] as const };
  await run(policy, argv);

  // Output as asked.
  const text: RunResult<string> = await run({}, argv);
  const bytes: RunResult<Buffer> = await run({}, argv, { encoding: 'buffer' });
  const lines: RunResult<string[]> = await run({}, argv, { lines: true });
  const latin: RunResult<string> = await run({}, argv, { encoding: 'latin1' });
  const all: string | undefined = (await run({}, argv, { all: true })).all;
  void [out, text, bytes, lines, latin, all];
  // @ts-expect-error 'text' is not an encoding
  await run({}, argv, { encoding: 'text' });

  // Exit or signal, never both; failed; reject throws with the result.
  const r = await run({}, argv, { reject: false });
  if (r.exitCode === null) {
    const s: NodeJS.Signals = r.signal;
    void s;
  } else {
    const n: number = r.exitCode;
    const none: null = r.signal;
    void [n, none];
  }
  const failed: boolean = r.failed;
  void failed;
  try {
    await run({}, ['false'], { reject: true });
  } catch (e) {
    if (e instanceof CommandFailedError) {
      const code: 'COMMAND_FAILED' | string = e.code;
      const result: RunResult<string | Buffer | string[]> = e.result;
      void [code, result];
    }
    if (e instanceof CorralError && e.code === 'ABORTED') void e.cause;
  }

  // stdio choices.
  const fromStream: RunOptions = { stdin: Readable.from(['x']), stdout: 'inherit', stderr: 2 };
  const toStream: RunOptions = { stdout: new Writable(), stderr: 'ignore', stdin: 'inherit' };
  await run({}, argv, fromStream);
  await run({}, argv, toStream);
  // @ts-expect-error a Writable cannot be stdin
  await run({}, argv, { stdin: new Writable() });

  // Cancellation everywhere.
  await run({}, argv, { signal });
  const poolOptions: PoolRunOptions = { signal, env: { A: '1' } };
  await using pool = new Pool({ timeout: '10s' }, { size: 2, concurrency: 4, maxQueue: 100, idleTimeout: '1h' });
  await pool.run(argv, poolOptions);
  const pooledLines: RunResult<string[]> = await pool.run(argv, { lines: true });
  void pooledLines;
  const stats: number = pool.stats().waits + pool.stats().queued + pool.stats().queuedTotal;
  void stats;
  await forkExec({}, argv, 2, { signal });
  await using t = await template({}, ['python3', 'tpl.py'], { signal });
  const clones = await t.fork(2, { signal });
  await reduce(['sort'], clones, undefined, { signal });

  // Resources and typed events.
  const spawnOptions: SpawnOptions = { stdin: 'ignore', buffer: true, signal };
  await using p = spawn({}, argv, spawnOptions);
  p.on('exit', (result) => void result.exitCode);
  p.on('error', (e) => void e.code);
  // @ts-expect-error no such event
  p.on('finish', () => undefined);
  const collected: RunResult<Buffer> = await spawn({}, argv, { buffer: true, encoding: 'buffer' }).wait();
  void collected;

  // Sizes, durations and caveat codes that catch mistakes.
  const sizes: Size[] = [4096, '4096', '64k', '256M', '256MB', '1.5G', '2T', '512MiB'];
  const durations: Duration[] = [250, '250', '250ms', '5s', '1.5s', '2m', '90min', '1h'];
  void [sizes, durations];
  // @ts-expect-error not a size unit
  const badSize: Size = '256X';
  // @ts-expect-error a size needs a number
  const noNumber: Size = 'lots';
  // @ts-expect-error not a duration unit
  const badDuration: Duration = '5 weeks';
  // @ts-expect-error weeks are not a unit
  plan({ timeout: '2w' });
  // @ts-expect-error memory takes a size
  plan({ limits: { memory: '1 gig' } });
  void [badSize, noNumber, badDuration];
  const code: CaveatCode = 'HOST_NETWORK';
  // @ts-expect-error not a caveat code
  const badCode: CaveatCode = 'HOST_NETWROK';
  const codes: readonly CaveatCode[] = CAVEAT_CODES;
  if (plan({}).caveats.some((c) => c.code === code)) void codes;
  void badCode;

  // Presets.
  await run(mergePolicies(presets.ci(), { timeout: '20m' }), ['npm', 'test']);
  await run(presets.agent({ dir: '/repo' }), argv);
  // @ts-expect-error no such preset
  presets.lax();
}
void api;
