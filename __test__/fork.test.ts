import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { corral, hasCommand, prerequisite, root } from './helpers';

const fixture = join(root, '__test__', 'fixtures', 'fork_template.py');
const policy = { fs: { read: [fixture] }, timeout: '2m' };
const python = prerequisite('python3 for the fork templates', hasCommand('python3') ? null : 'python3 is not installed');

/** Every process in the tree below `pid` (host pids), `pid` included. */
function tree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${all[i]}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        const kids = readFileSync(`/proc/${all[i]}/task/${t}/children`, 'utf8').trim();
        if (kids) all.push(...kids.split(/\s+/).map(Number));
      } catch {
        // gone meanwhile
      }
    }
  }
  return all;
}

function pss(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function firstLine(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let buf = '';
    const onData = (c: Buffer) => {
      buf += c.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        stream.off('data', onData);
        resolve(buf.slice(0, nl));
      }
    };
    stream.on('data', onData);
  });
}

describe.skipIf(!python)('copy-on-write fork (Python template)', () => {
  it('100 clones of a 50 MB template report its checksum and share its memory', async () => {
    const t = await corral.template(policy, ['python3', fixture, 'hold']);
    try {
      const clones = await t.fork(100);
      expect(clones.map((c) => c.id)).toEqual([...Array(100).keys()]);
      const lines = await Promise.all(clones.map((c) => firstLine(c.stdout)));
      const expected = (await corral.run(policy, ['python3', '-c', 'import zlib; print(zlib.crc32(bytes(range(256)) * (50 * 1024 * 1024 // 256)))'])).stdout.trim();
      lines.forEach((l, i) => expect(l).toBe(`${i} ${expected}`));
      // Every clone has read all 50 MB; measured now, while all of them are alive.
      const procs = tree(t.pid);
      expect(procs.length).toBeGreaterThanOrEqual(102); // init, template, 100 clones
      const total = procs.reduce((s, p) => s + pss(p), 0);
      console.log(`PSS of template + 100 clones: ${(total / 2 ** 20).toFixed(0)} MB (unshared would be ≥ ${100 * 50} MB)`);
      expect(total).toBeLessThan(100 * 50 * 2 ** 20 * 0.25);
    } finally {
      await t.close();
    }
    expect(tree(t.pid).filter((p) => p !== t.pid).length).toBe(0);
  }, 120_000);

  it('clones exit with their own codes; reduce() feeds their output in CLONE_ID order', async () => {
    const t = await corral.template(policy, ['python3', fixture, 'sum']);
    const clones = await t.fork(6);
    const outs = await Promise.all(clones.map((c) => c.output()));
    expect(outs.map((o) => o.exitCode)).toEqual([0, 1, 2, 0, 1, 2]);
    const more = await t.fork(4);
    const reduced = await corral.reduce(['sh', '-c', 'cut -d" " -f1 | tr "\\n" ,'], more);
    expect(reduced.stdout).toBe('0,1,2,3,');
    const closed = await t.close();
    expect(closed.exitCode).toBe(0);
    expect(closed.stdout).toBe('template ready\n');
  }, 60_000);

  it('a clone can be paused, resumed and killed; the rest end with the template', async () => {
    const t = await corral.template(policy, ['python3', fixture, 'tick']);
    const [ticker, other] = await t.fork(2);
    let lines = 0;
    ticker.stdout.on('data', (c: Buffer) => (lines += c.toString().split('\n').length - 1));
    await new Promise((r) => setTimeout(r, 300));
    await ticker.pause();
    await new Promise((r) => setTimeout(r, 100));
    const paused = lines;
    await new Promise((r) => setTimeout(r, 400));
    expect(lines).toBe(paused);
    await ticker.resume();
    await new Promise((r) => setTimeout(r, 300));
    expect(lines).toBeGreaterThan(paused);
    await ticker.kill('SIGTERM');
    expect(await ticker.wait()).toEqual({ cloneId: 0, exitCode: null, signal: 'SIGTERM' });
    await t.close();
    expect(await other.wait()).toEqual({ cloneId: 1, exitCode: null, signal: 'SIGKILL' });
  }, 30_000);

  it('an AbortSignal reaches fork(), reduce() and the template itself; await using closes it', async () => {
    const forks = new AbortController();
    {
      await using t = await corral.template(policy, ['python3', fixture, 'tick']);
      const clones = await t.fork(2, { signal: forks.signal });
      const reducing = corral.reduce(['cat'], clones, undefined, { signal: forks.signal }).catch((e) => e);
      forks.abort('enough');
      expect((await reducing).code).toBe('ABORTED');
      expect(await Promise.all(clones.map((c) => c.wait()))).toEqual([
        { cloneId: 0, exitCode: null, signal: 'SIGKILL' },
        { cloneId: 1, exitCode: null, signal: 'SIGKILL' },
      ]);
      await expect(t.fork(1, { signal: forks.signal })).rejects.toMatchObject({ code: 'ABORTED', cause: 'enough' });
    }
    const life = new AbortController();
    const t = await corral.template(policy, ['python3', fixture, 'hold'], { signal: life.signal });
    const [clone] = await t.fork(1);
    life.abort();
    expect(await clone.wait()).toMatchObject({ signal: 'SIGKILL' });
    expect((await t.close()).exitCode).toBe(0);
    await expect(corral.template(policy, ['python3', fixture, 'sum'], { signal: life.signal })).rejects.toMatchObject({ code: 'ABORTED' });
  }, 60_000);

  it('a clone cannot read another clone\'s memory through /proc/PID/mem', async () => {
    const t = await corral.template(policy, ['python3', fixture, 'peek']);
    try {
      const clones = await t.fork(2);
      const out = await Promise.all(clones.map((c) => c.output()));
      expect(out[0].stdout).toBe('victim\n');
      expect(out[1].stdout).toMatch(/^refused /);
    } finally {
      await t.close();
    }
  }, 30_000);

  it('a template that fails before it is ready says how and why', async () => {
    const e = await corral.template(policy, ['python3', fixture, 'die']).catch((x) => x);
    expect(e).toBeInstanceOf(corral.CorralError);
    expect(e.code).toBe('SPAWN_FAILED');
    expect(e.message).toMatch(/exited with code 3/);
    expect(e.message).toMatch(/cannot load the model/);
  });

  it('a command that never speaks the protocol is refused with a clear error', async () => {
    const e = await corral.template({}, ['true']).catch((x) => x);
    expect(e.code).toBe('SPAWN_FAILED');
    expect(e.message).toMatch(/before it was ready/);
  });
});

describe.skipIf(!python)('fork arguments', () => {
  it('rejects a bad clone count with the field named', async () => {
    const t = await corral.template(policy, ['python3', fixture, 'sum']);
    try {
      await expect(t.fork(0)).rejects.toMatchObject({ code: 'POLICY_INVALID', field: 'n' });
    } finally {
      await t.close();
    }
  });
});
