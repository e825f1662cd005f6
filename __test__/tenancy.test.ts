// One tenant never hurts another. Each attack runs in this process beside a victim tenant
// whose runs are checked for correctness and timed against the victim's own baseline,
// measured in the same test; the caller's memory and descriptors are sampled throughout.
// The latency bound is a correctness bound (the failures it catches are stalls of seconds),
// generous enough for a loaded 2-core machine, not a benchmark.
import { afterAll, beforeEach, afterEach, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, writeFileSync, mkdirSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { corral, helpersOf, hostDir, prerequisite } from './helpers';

const { run } = corral;
const sh = (script: string) => ['/bin/sh', '-c', script];

/** The caller's resident memory (MiB) and open descriptors. */
function usage(): { rssMiB: number; fds: number } {
  return { rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20), fds: readdirSync('/proc/self/fd').length };
}

/** One run of the victim tenant: correct, and how long it took (ms). */
async function victim(): Promise<number> {
  const t0 = performance.now();
  const r = await run({}, ['/bin/echo', 'victim']);
  expect(r).toMatchObject({ exitCode: 0, signal: null, timedOut: false, stdout: 'victim\n' });
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** What the caller and the victim went through during one attack. */
interface Figures {
  baselineMs: number;
  victimMs: number[];
  before: { rssMiB: number; fds: number };
  peak: { rssMiB: number; fds: number };
  after: { rssMiB: number; fds: number };
}
const figures: Record<string, Figures> = {};
afterAll(() => {
  for (const [name, f] of Object.entries(figures)) {
    console.log(
      `tenancy ${name}: victim ${f.baselineMs.toFixed(1)} ms alone, max ${Math.max(...f.victimMs).toFixed(1)} ms (median ${median(f.victimMs).toFixed(1)}, n=${f.victimMs.length}) beside the attack; ` +
        `caller rss ${f.before.rssMiB} → ${f.after.rssMiB} MiB (peak ${f.peak.rssMiB}), fds ${f.before.fds} → ${f.after.fds} (peak ${f.peak.fds})`,
    );
  }
});

/**
 * Runs `attack` while the victim runs again and again beside it (at least `minVictims`
 * times), then checks the victim's every run against its baseline and the caller's
 * descriptors against what it had before. Resolves with what `attack` resolved with.
 */
async function beside<T>(name: string, attack: () => Promise<T>, opts: { minVictims?: number; rssGrowthMiB?: number } = {}): Promise<T> {
  for (let i = 0; i < 2; i++) await victim(); // warm: the helper is up, the binaries cached
  const alone: number[] = [];
  for (let i = 0; i < 5; i++) alone.push(await victim());
  const baselineMs = median(alone);
  global.gc?.();
  const before = usage();
  const peak = { ...before };
  const sampler = setInterval(() => {
    const u = usage();
    peak.rssMiB = Math.max(peak.rssMiB, u.rssMiB);
    peak.fds = Math.max(peak.fds, u.fds);
  }, 20);
  let done = false;
  const attacking = attack().finally(() => (done = true));
  const victimMs: number[] = [];
  try {
    while (!done || victimMs.length < (opts.minVictims ?? 3)) victimMs.push(await victim());
    const result = await attacking;
    const after = usage();
    figures[name] = { baselineMs, victimMs, before, peak, after };
    // The victim never waits on the attacker: a stall would show as seconds.
    const bound = 10 * baselineMs + 400;
    expect(Math.max(...victimMs), `victim runs beside the attack (baseline ${baselineMs.toFixed(1)} ms): ${victimMs.map((m) => m.toFixed(0)).join(' ')}`).toBeLessThan(bound);
    expect(after.fds, 'descriptors left in the caller').toBeLessThanOrEqual(before.fds + 4);
    expect(peak.rssMiB - before.rssMiB, 'the caller\'s memory growth').toBeLessThan(opts.rssGrowthMiB ?? 200);
    return result;
  } finally {
    clearInterval(sampler);
    await attacking.catch(() => undefined);
  }
}

let tree: ReturnType<typeof hostDir>;
let proj = '';
beforeEach(() => {
  tree = hostDir('corral-tenancy-');
  proj = join(tree.path, 'proj');
  mkdirSync(join(proj, '.git', 'hooks'), { recursive: true });
  writeFileSync(join(proj, 'a.txt'), 'original a\n');
});
afterEach(() => tree.cleanup());

const overlay = (dir: string) => ({ fs: { write: [dir], writeMode: 'overlay' as const } });

describe('overlay change sets', () => {
  it('a tree 4000 levels deep: the caller survives, the result arrives and says why nothing can be committed', async () => {
    const r = await beside('deep overlay tree (4000 levels)', () =>
      // Relative steps, so that no path the command uses is longer than PATH_MAX.
      run(overlay(proj), ['/usr/bin/python3', '-c', `import os\nos.chdir("${proj}")\nfor i in range(4000):\n    os.mkdir("d"); os.chdir("d")\nprint("done")`]),
    );
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('done\n');
    expect(r.changes!.error).toMatch(/too deep to list or commit/);
    await expect(r.changes!.commit()).rejects.toThrow(/could not be listed in full/);
    expect(existsSync(join(proj, 'd'))).toBe(false);
  }, 120_000);

  it('two tenants writing 60,000 files each: listings are bounded, results arrive, commit applies all', async () => {
    const many = (dir: string) => run(overlay(dir), ['/usr/bin/python3', '-c', `import os\nfor i in range(60000): open(os.path.join("${dir}", "f%d" % i), "w").close()\nprint("ok")`]);
    const other = join(tree.path, 'other');
    mkdirSync(other);
    const [a, b] = await beside('two overlay change sets of 60,000 files', () => Promise.all([many(proj), many(other)]), { rssGrowthMiB: 300 });
    for (const r of [a, b]) {
      expect(r.stdout).toBe('ok\n');
      expect(r.changes!.error).toBeUndefined();
      expect(r.changes!.files).toHaveLength(50_000);
      expect(r.changes!.omitted).toBe(10_000);
    }
    await a.changes!.commit();
    b.changes!.discard();
    expect(readdirSync(proj).filter((n) => n.startsWith('f'))).toHaveLength(60_000);
    expect(readdirSync(other)).toEqual([]);
  }, 300_000);

  it('listings tell the truth about types, targets and names, beside a victim', async () => {
    const r = await beside('lying shapes in a change listing', () =>
      run(overlay(proj), ['/usr/bin/python3', '-c', `import os, shutil\nos.chdir("${proj}")\nshutil.rmtree(".git")\nopen(".git", "w").write("gitdir: x\\n")\nos.unlink("a.txt")\nos.symlink("/etc/shadow", "a.txt")\nopen(b"bad\\xffname", "w").close()\nopen("x\\x1b[1A\\x1b[2K\\r  M  README.md", "w").close()`]),
    );
    const byName = Object.fromEntries(r.changes!.files.map((f) => [f.path.slice(proj.length + 1), f]));
    expect(byName['.git']).toMatchObject({ kind: 'replaced', type: 'file', previousType: 'dir' });
    expect(byName['a.txt']).toMatchObject({ kind: 'replaced', type: 'symlink', target: '/etc/shadow' });
    expect(Object.values(byName).some((f) => f.rawPath)).toBe(true);
    expect(byName['x\u001b[1A\u001b[2K\r  M  README.md']).toMatchObject({ kind: 'added', type: 'file' });
  });

  it('a commit with 255-byte names applies all of it, beside a victim', async () => {
    const long = 'n'.repeat(255);
    const r = await run(overlay(proj), sh(`cd ${proj} && echo 1 > a.txt && echo 2 > ${long} && echo 3 > zz.txt`));
    await beside('commit of 255-byte names', () => r.changes!.commit());
    expect([readFileSync(join(proj, 'a.txt'), 'utf8'), readFileSync(join(proj, long), 'utf8'), readFileSync(join(proj, 'zz.txt'), 'utf8')]).toEqual(['1\n', '2\n', '3\n']);
  });
});

describe('results that cannot hide what happened', () => {
  // A child burns CPU and memory under a parent that ignores SIGCHLD, so that it is reaped
  // without anyone waiting for it: rusage never sees it.
  const hider = ['/usr/bin/python3', '-c', [
    'import os, signal, time',
    'signal.signal(signal.SIGCHLD, signal.SIG_IGN)',
    'pid = os.fork()',
    'if pid == 0:',
    '    b = bytearray(300 << 20)',
    '    for i in range(0, len(b), 4096): b[i] = 1',
    '    end = time.process_time() + 1.0',
    '    while time.process_time() < end: pass',
    '    os._exit(0)',
    'while True:',
    '    try: os.kill(pid, 0)',
    '    except ProcessLookupError: break',
    '    time.sleep(0.02)',
  ].join('\n')];

  const caps = corral.check();
  const cgroup = prerequisite(
    'a writable cgroup with the memory controller',
    caps.cgroup.writable && caps.cgroup.controllers.includes('memory') ? null : (caps.cgroup.detail ?? 'no writable cgroup'),
  );

  it.runIf(cgroup)('takes CPU time and peak memory from the cgroup where there is one', async () => {
    const r = await beside('a child hidden from rusage (cgroup)', () => run({ limits: { memory: '1G' } }, hider));
    expect(r.exitCode).toBe(0);
    expect(r.statsEstimated).toEqual({ cpuTime: false, peakMemory: false });
    expect(r.cpuTimeMs.user + r.cpuTimeMs.system).toBeGreaterThan(800);
    expect(r.peakMemoryBytes).toBeGreaterThan(280 * 2 ** 20);
  });
  // Where no cgroup counts (an unprivileged caller here), rootless.test.ts checks that the
  // result says its figures are estimates.
});

describe('nothing left behind in the caller', () => {
  it('spawn() closes its stdin pipe when the sandbox ends, though the caller never ends stdin', async () => {
    await beside('200 spawns with stdin never ended', async () => {
      for (let i = 0; i < 5; i++) await corral.spawn({}, ['/bin/true']).wait();
      const before = usage().fds;
      for (let i = 0; i < 200; i++) {
        const p = corral.spawn({}, ['/bin/true']);
        expect((await p.wait()).exitCode).toBe(0);
      }
      // Writes after the end go nowhere, without an error.
      const p = corral.spawn({}, ['/bin/true']);
      await p.wait();
      p.stdin!.write('late\n');
      await new Promise((r) => setImmediate(r));
      expect(usage().fds - before).toBeLessThanOrEqual(4);
    });
  });
});

describe('a template that breaks the fork protocol', () => {
  const hostile = join(__dirname, 'fixtures', 'hostile_template.py');

  for (const kind of ['reset', 'dirfd', 'devzero', 'writeend']) {
    it(`\`forked\` with ${kind} descriptors: fork() rejects and keeps nothing, the caller survives`, async () => {
      await beside(`a template answering \`forked\` with ${kind} descriptors (x5)`, async () => {
        // beside() checks the caller's descriptors afterwards: 5 answers of 2 descriptors
        // each would show.
        for (let i = 0; i < 5; i++) {
          const t = await corral.template({ fs: { read: [hostile] } }, ['/usr/bin/python3', hostile, kind]);
          try {
            await expect(t.fork(1)).rejects.toMatchObject({ code: 'SPAWN_FAILED', message: expect.stringMatching(/read ends of two pipes/) });
            // The template is broken for good: nothing more comes from it.
            await expect(t.fork(1)).rejects.toMatchObject({ code: 'SPAWN_FAILED' });
          } finally {
            const r = await t.close();
            expect(r.exitCode).toBe(0);
          }
        }
      });
    }, 60_000);
  }

  it('a flood of `exit` for clones never asked for ends the channel, not the caller\'s CPU', async () => {
    const flood = async () => {
      const t = await corral.template({ fs: { read: [hostile] } }, ['/usr/bin/python3', hostile, 'exitflood']);
      try {
        const [clone] = await t.fork(1);
        const e = await clone!.wait();
        await expect(t.fork(1)).rejects.toThrow(/`exit` for unknown clone/);
        return e;
      } finally {
        await t.close();
      }
    };
    // Alone first: the caller's CPU time over three seconds of flooding. Each message a
    // template may send answers a request, so the caller reads one message it did not ask
    // for, then stops reading.
    const cpu0 = process.cpuUsage();
    const alone = await flood();
    const used = process.cpuUsage(cpu0);
    const ms = (used.user + used.system) / 1000;
    console.log(`tenancy fork-channel flood: the caller used ${ms.toFixed(0)} ms of CPU over 3 s of flooding`);
    expect(ms).toBeLessThan(800);
    // The clone's handle resolves, as killed: its template's channel is gone.
    expect(alone.signal).toBe('SIGKILL');
    expect((await beside('a template flooding its fork channel', flood)).signal).toBe('SIGKILL');
  }, 60_000);
});

/** Pids of this process's helpers. */
const helperPids = (parent: number) => helpersOf(parent).map(Number);

/** The helper's base cgroup directories (`…/corral/h<pid>`) that exist, in any hierarchy. */
function baseCgroups(helper: number): string[] {
  const roots = ['/sys/fs/cgroup', ...readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c))];
  return roots.map((r) => join(r, 'corral', `h${helper}`)).filter((d) => existsSync(d));
}

const until = async (what: () => boolean, ms = 5000) => {
  for (let t = 0; t < ms && !what(); t += 20) await new Promise((r) => setTimeout(r, 20));
  return what();
};

describe('pools', () => {
  it('close() kills the commands it handed out, and their results say so', async () => {
    await beside('a pool closed under running commands', async () => {
      const pool = new corral.Pool({}, { size: 2 });
      const runs = [pool.run(['/bin/sleep', '30']), pool.run(['/bin/sleep', '30'])];
      expect(await until(() => pool.stats().inUse === 2)).toBe(true);
      await pool.close();
      for (const r of await Promise.all(runs)) expect(r).toMatchObject({ exitCode: null, signal: 'SIGKILL', timedOut: false });
      expect(pool.stats().inUse).toBe(0);
    });
  });

  it('a pool recovers when its helper dies, and counts what it has in use truly', async () => {
    const pool = new corral.Pool({}, { size: 1 });
    try {
      expect((await pool.run(['/bin/echo', 'before'])).stdout).toBe('before\n');
      const running = pool.run(['/bin/sleep', '30']);
      expect(await until(() => pool.stats().inUse === 1)).toBe(true);
      const killed = helperPids(process.pid);
      expect(killed.length).toBeGreaterThan(0);
      for (const pid of killed) process.kill(pid, 'SIGKILL');
      await expect(running).rejects.toBeInstanceOf(corral.CorralError);
      expect(await until(() => helperPids(process.pid).every((pid) => !killed.includes(pid)))).toBe(true);
      for (let i = 0; i < 3; i++) expect((await pool.run(['/bin/echo', 'after'])).stdout).toBe('after\n');
      // A policy whose sandboxes can no longer be prepared (a granted directory removed)
      // fails its runs, and counts nothing twice.
      const gone = join(tree.path, 'gone');
      mkdirSync(gone);
      const bad = new corral.Pool({ fs: { read: [gone] } }, { size: 1 });
      rmSync(gone, { recursive: true });
      const outcomes = [];
      for (let i = 0; i < 3; i++) outcomes.push(await bad.run(['/bin/true']).then(() => 'ran', (e) => e.code));
      expect(outcomes.slice(1)).toEqual(['SPAWN_FAILED', 'SPAWN_FAILED']);
      await bad.close();
      for (const p of [pool, bad]) {
        expect(p.stats().inUse).toBe(0);
        expect(() => JSON.stringify(p.stats())).not.toThrow();
      }
    } finally {
      await pool.close();
    }
  }, 60_000);
});

describe('pausing', () => {
  const caps = corral.check();
  const freezer = prerequisite('a cgroup freezer', caps.cgroup.writable && caps.cgroup.controllers.includes('freezer') && caps.cgroup.controllers.includes('pids') ? null : 'no writable cgroup with the freezer and pids controllers');

  // As root a sandbox always has a cgroup (the freezer pauses it); rootless.test.ts pauses
  // one without, where signals from inside its pid namespace do.
  it('pause() of a tree that forks as fast as it can stops it at once; the helper never stalls', async () => {
    // 300 sleepers and a chain that forks and exits as fast as it can, writing a counter.
    const dir = tree.path;
    const script = `for i in $(seq 300); do sleep 60 & done; i=0; while :; do i=$((i+1)); echo $i > ${dir}/count; /bin/true; done`;
    const p = corral.spawn({ fs: { write: [dir] }, timeout: '20s' }, ['/bin/sh', '-c', script]);
    expect(await until(() => existsSync(join(dir, 'count')))).toBe(true);
    const paused = await beside('pause() of a tree forking as fast as it can', async () => {
      await p.pause();
      const at = readFileSync(join(dir, 'count'), 'utf8');
      await new Promise((r) => setTimeout(r, 300));
      return [at, readFileSync(join(dir, 'count'), 'utf8')];
    });
    expect(paused[1]).toBe(paused[0]);
    await p.resume();
    expect(await until(() => readFileSync(join(dir, 'count'), 'utf8') !== paused[0])).toBe(true);
    p.kill('SIGKILL');
    expect((await p.wait()).signal).toBe('SIGKILL');
  }, 60_000);

  it.runIf(freezer)('a paused sandbox still ends at its timeout (cgroup freezer)', async () => {
    const p = corral.spawn({ limits: { pids: 64 }, timeout: '1s' }, ['/bin/sleep', '30']);
    await new Promise((r) => p.once('spawn', r));
    await p.pause();
    const r = await p.wait();
    expect(r).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
  });

  it.runIf(freezer)('a caller that exits or is killed leaves no paused sandbox and no cgroup behind', async () => {
    for (const end of ['process.exit(0)', "process.kill(process.pid, 'SIGKILL')"]) {
      const marker = `corral-paused-${Date.now()}-${Math.random().toString(36).slice(2)}`;
      const script = `const c = require(${JSON.stringify(join(__dirname, '..'))});
        const p = c.spawn({ limits: { pids: 64, memory: '64M' } }, ['/bin/sh', '-c', 'exec sleep 30 ${marker}']);
        p.once('spawn', async () => {
          await p.pause();
          const helper = require('fs').readdirSync('/proc/self/task').flatMap((t) => require('fs').readFileSync('/proc/self/task/' + t + '/children', 'utf8').split(' ').filter(Boolean));
          console.log(JSON.stringify(helper));
          ${end};
        });`;
      const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
      expect(out.stdout.trim(), `the caller's stderr: ${out.stderr}`).not.toBe('');
      const helpers: number[] = JSON.parse(out.stdout.trim().split('\n').pop()!).map(Number);
      expect(helpers.length).toBeGreaterThan(0);
      const left = () => readdirSync('/proc').filter((q) => /^\d+$/.test(q) && (() => { try { return readFileSync(`/proc/${q}/cmdline`, 'utf8').includes(marker); } catch { return false; } })());
      expect(await until(() => left().length === 0), `${end}: the paused sandbox's processes`).toBe(true);
      expect(await until(() => helpers.every((h) => baseCgroups(h).length === 0)), `${end}: ${helpers.flatMap(baseCgroups).join(', ')}`).toBe(true);
    }
  }, 60_000);
});

describe('reduce()', () => {
  const template = join(__dirname, 'fixtures', 'fork_template.py');

  it('frames each clone\'s output and says how each clone ended', async () => {
    const t = await corral.template({ fs: { read: [template] } }, ['/usr/bin/python3', template, 'partial']);
    try {
      const lines = await beside('reduce() over a clone killed mid-line', async () => corral.reduce(['/bin/cat'], await t.fork(3)));
      expect(lines.stdout).toBe('count=5\n1\n2\n');
      expect(lines.clones).toEqual([
        { cloneId: 0, exitCode: null, signal: 'SIGKILL' },
        { cloneId: 1, exitCode: 0, signal: null },
        { cloneId: 2, exitCode: 0, signal: null },
      ]);
      const json = await corral.reduce(['/bin/cat'], await t.fork(2), undefined, { framing: 'json' });
      expect(json.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual([
        { cloneId: 0, exitCode: null, signal: 'SIGKILL', stdout: 'count=5' },
        { cloneId: 1, exitCode: 0, signal: null, stdout: '1\n' },
      ]);
      await expect(corral.reduce(['/bin/cat'], await t.fork(2), undefined, { rejectFailedClones: true })).rejects.toMatchObject({
        code: 'COMMAND_FAILED',
        message: expect.stringMatching(/clone 0 was killed by SIGKILL/),
      });
    } finally {
      await t.close();
    }
  }, 60_000);
});
