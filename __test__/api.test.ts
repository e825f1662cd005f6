// The TypeScript surface as execa's users expect it: results, options, stdio choices,
// cancellation everywhere, disposal, typed events, and a pool under a burst.
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { corral, root } from './helpers';

const { run, spawn, Pool, forkExec, CorralError, CommandFailedError } = corral;
const sh = (s: string) => ['/bin/sh', '-c', s];
const scratch = mkdtempSync(join(tmpdir(), 'corral-api-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('results', () => {
  it('say whether the command failed, with exit code or signal and never both', async () => {
    const ok = await run({}, ['true']);
    expect(ok).toMatchObject({ failed: false, exitCode: 0, signal: null });
    expect(await run({}, sh('exit 3'))).toMatchObject({ failed: true, exitCode: 3, signal: null });
    expect(await run({}, sh('kill -TERM $$'))).toMatchObject({ failed: true, exitCode: null, signal: 'SIGTERM' });
    expect(await run({ timeout: '200ms' }, ['sleep', '10'])).toMatchObject({ failed: true, timedOut: true, exitCode: null, signal: 'SIGKILL' });
  });

  it('throw a CommandFailedError carrying the result with reject: true', async () => {
    const e = await run({}, sh('echo out; echo err >&2; exit 4'), { reject: true }).catch((x) => x);
    expect(e).toBeInstanceOf(CommandFailedError);
    expect(e).toBeInstanceOf(CorralError);
    expect(e.code).toBe('COMMAND_FAILED');
    expect(e.result).toMatchObject({ exitCode: 4, stdout: 'out\n', stderr: 'err\n', failed: true });
    expect((await run({}, ['true'], { reject: true })).exitCode).toBe(0);
  });

  it('decode with any encoding, or split into lines', async () => {
    const cmd = sh('printf "h\\303\\251\\r\\nline two\\nlast\\n"; printf "e1\\ne2" >&2');
    expect((await run({}, cmd, { encoding: 'buffer' })).stdout).toEqual(Buffer.from('hé\r\nline two\nlast\n'));
    expect((await run({}, cmd, { encoding: 'hex' })).stdout).toBe(Buffer.from('hé\r\nline two\nlast\n').toString('hex'));
    expect((await run({}, cmd, { encoding: 'latin1' })).stdout).toBe(Buffer.from('hé\r\nline two\nlast\n').toString('latin1'));
    const lines = await run({}, cmd, { lines: true });
    expect(lines.stdout).toEqual(['hé', 'line two', 'last']);
    expect(lines.stderr).toEqual(['e1', 'e2']);
    await expect(run({}, cmd, { lines: true, encoding: 'buffer' } as never)).rejects.toMatchObject({ code: 'POLICY_INVALID', field: 'lines' });
    await expect(run({}, cmd, { encoding: 'text' as never })).rejects.toMatchObject({ code: 'POLICY_INVALID', field: 'encoding' });
  });

  it('interleave stdout and stderr as they came with all: true', async () => {
    const r = await run({}, sh('echo 1; sleep 0.05; echo 2 >&2; sleep 0.05; echo 3'), { all: true });
    expect(r.all).toBe('1\n2\n3\n');
    expect(r.stdout).toBe('1\n3\n');
    expect(r.stderr).toBe('2\n');
    expect((await run({}, sh('echo a; echo b >&2'), { all: true, lines: true })).all).toHaveLength(2);
  });
});

describe('stdio choices', () => {
  it('stream stdin from a Readable, a descriptor or input', async () => {
    expect((await run({}, ['cat'], { stdin: Readable.from(['from ', 'a stream']) })).stdout).toBe('from a stream');
    const file = join(scratch, 'in.txt');
    writeFileSync(file, 'from a file');
    const stream = createReadStream(file);
    await new Promise((r) => stream.once('open', r));
    expect((await run({}, ['cat'], { stdin: (stream as unknown as { fd: number }).fd })).stdout).toBe('from a file');
    expect((await run({}, ['cat'], { input: 'given' })).stdout).toBe('given');
  });

  it('send output to a Writable, a descriptor, or nowhere, capturing only pipes', async () => {
    const sink = new PassThrough();
    const chunks: Buffer[] = [];
    sink.on('data', (c: Buffer) => chunks.push(c));
    const r = await run({}, sh('echo to-stream; echo to-err >&2'), { stdout: sink });
    expect(Buffer.concat(chunks).toString()).toBe('to-stream\n');
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('to-err\n');
    const out = join(scratch, 'out.txt');
    const fd = require('node:fs').openSync(out, 'w');
    const viaFd = await run({}, sh('echo into-fd; echo quiet >&2'), { stdout: fd, stderr: 'ignore' });
    require('node:fs').closeSync(fd);
    expect(readFileSync(out, 'utf8')).toBe('into-fd\n');
    expect(viaFd).toMatchObject({ stdout: '', stderr: '', exitCode: 0 });
  });

  it("hands the caller's own descriptors over with 'inherit'", () => {
    const script = `require(${JSON.stringify(join(root, 'dist', 'index.js'))}).run({}, ['sh', '-c', 'echo inherited; echo err >&2'], { stdout: 'inherit', stderr: 'inherit' }).then((r) => process.stdout.write('captured:' + JSON.stringify(r.stdout)))`;
    const r = require('node:child_process').spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stdout).toBe('inherited\ncaptured:""');
    expect(r.stderr).toBe('err\n');
  });

  it('refuse a stdio value of the wrong kind', async () => {
    await expect(run({}, ['true'], { stdout: 'loud' as never })).rejects.toMatchObject({ code: 'POLICY_INVALID', field: 'stdout' });
    await expect(run({}, ['true'], { input: 'x', stdin: 'ignore' })).rejects.toMatchObject({ code: 'POLICY_INVALID', field: 'stdin' });
  });

  it('let spawn().wait() return the output too, while the streams carry it', async () => {
    const p = spawn({}, sh('echo one; echo two >&2'), { buffer: true, all: true });
    let streamed = '';
    p.stdout.on('data', (c: Buffer) => (streamed += c));
    const r = await p.wait();
    expect(r).toMatchObject({ stdout: 'one\n', stderr: 'two\n', exitCode: 0 });
    expect(streamed).toBe('one\n');
    expect(r.all).toMatch(/^(one\ntwo\n|two\none\n)$/);
    // Without buffer, the output was the streams' alone.
    expect((await spawn({}, ['echo', 'x'], { stdout: 'ignore' }).wait()).stdout).toBe('');
  });
});

describe('cancellation', () => {
  it('kills a run and rejects with ABORTED carrying the reason', async () => {
    const ac = new AbortController();
    const pending = run({}, ['sleep', '30'], { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('enough')), 200);
    const e = await pending.catch((x) => x);
    expect(e).toMatchObject({ code: 'ABORTED' });
    expect(e.cause).toEqual(new Error('enough'));
  });

  it('reaches pooled runs, queued ones, and forkExec', async () => {
    const pool = new Pool({ timeout: '30s' }, { size: 1, concurrency: 1 });
    try {
      const ac = new AbortController();
      const running = pool.run(['sleep', '30'], { signal: ac.signal }).catch((e) => e);
      const queued = pool.run(['true'], { signal: ac.signal }).catch((e) => e);
      await new Promise((r) => setTimeout(r, 300));
      expect(pool.stats().queued).toBe(1);
      ac.abort('stop');
      expect(await running).toMatchObject({ code: 'ABORTED', cause: 'stop' });
      expect(await queued).toMatchObject({ code: 'ABORTED', cause: 'stop' });
      expect((await pool.run(['echo', 'after'])).stdout).toBe('after\n');
    } finally {
      await pool.close();
    }
    const e = await forkExec({}, ['sleep', '30'], 2, { signal: AbortSignal.timeout(300) }).catch((x) => x);
    expect(e.code).toBe('ABORTED');
  });
});

describe('resources and events', () => {
  it('dispose a sandbox process, a pool, a template', async () => {
    let pid = 0;
    {
      const p = spawn({}, ['sleep', '30']);
      await new Promise((r) => p.once('spawn', r));
      pid = p.pid!;
      await p[Symbol.asyncDispose]();
    }
    expect(() => process.kill(pid, 0)).toThrow();
    const pool = new Pool({}, { size: 1 });
    await pool[Symbol.asyncDispose]();
    await expect(pool.run(['true'])).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it("emits 'spawn', 'exit' and 'error'", async () => {
    const p = spawn({}, ['echo', 'hi'], { buffer: true });
    const events: string[] = [];
    p.on('spawn', () => events.push('spawn'));
    const exited = new Promise((r) => p.on('exit', (result) => r(result.stdout)));
    expect(await exited).toBe('hi\n');
    expect(events).toEqual(['spawn']);
    const bad = spawn({}, ['no-such-command-xyz']);
    const error = await new Promise<InstanceType<typeof CorralError>>((r) => bad.on('error', r));
    expect(error).toMatchObject({ code: 'SPAWN_FAILED', field: 'argv[0]' });
  });
});

describe('a pool under a burst', () => {
  it('waits for warm sandboxes instead of making cold ones, and bounds its queue', async () => {
    const pool = new Pool({ timeout: '20s' }, { size: 4, concurrency: 4, maxQueue: 200 });
    try {
      const results = await Promise.all(Array.from({ length: 60 }, (_, i) => pool.run(['sh', '-c', `echo ${i}`])));
      expect(results.map((r) => Number(r.stdout))).toEqual(Array.from({ length: 60 }, (_, i) => i));
      const s = pool.stats();
      expect(s.misses).toBe(0);
      expect(s.hits + s.waits).toBe(60);
      expect(s.created).toBeLessThanOrEqual(64);
      expect(s.queuedTotal).toBe(56);
      expect(s.queued).toBe(0);
    } finally {
      await pool.close();
    }
    const small = new Pool({}, { size: 1, concurrency: 1, maxQueue: 1 });
    try {
      const first = small.run(['sleep', '0.3']);
      const second = small.run(['true']);
      await expect(small.run(['true'])).rejects.toMatchObject({ code: 'QUEUE_FULL' });
      await Promise.all([first, second]);
    } finally {
      await small.close();
    }
  });

  it('accepts the same output options as run()', async () => {
    const pool = new Pool({}, { size: 1 });
    try {
      expect((await pool.run(sh('echo a; echo b'), { lines: true })).stdout).toEqual(['a', 'b']);
      await expect(pool.run(['false'], { reject: true })).rejects.toBeInstanceOf(CommandFailedError);
    } finally {
      await pool.close();
    }
  });
});
