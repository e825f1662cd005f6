// Resource limits, statistics, live streams and process control, against the
// real kernel. Tree-wide limits use a cgroup where the host gives us one (root here);
// rootless.test.ts checks the rlimit fallback and its caveats.
import { describe, expect, it } from 'vitest';
import { corral, hasCommand, prerequisite, runCli } from './helpers';

const { run, spawn, check } = corral;
const caps = check();
const cgroups = prerequisite('writable cgroups for tree-wide limits', caps.cgroup.writable ? null : (caps.cgroup.detail ?? 'cgroups are not writable here'));
const python = prerequisite('python3 for the memory bomb', hasCommand('python3') ? null : 'python3 is not installed');

describe('limits that hold', () => {
  it('stops a fork bomb at the pids limit', async () => {
    const r = await run({ limits: { pids: 20 }, timeout: '20s' }, ['sh', '-c', 'n=0; for i in $(seq 100); do (sleep 2) 2>/dev/null & n=$((n+1)); done; sleep 0.2; echo $(ls /proc | grep -c "^[0-9]"); wait']);
    expect(Number(r.stdout.trim())).toBeLessThanOrEqual(20);
    expect(r.limits.cgroup?.pids ?? r.limits.rlimits.processes).toBe(20);
  });

  it.skipIf(!cgroups || !python)('kills a memory bomb and reports oomKilled with the tree peak near the limit', async () => {
    const limit = 96 << 20;
    const r = await run({ limits: { memory: limit }, timeout: '30s' }, ['python3', '-c', 'chunks = []\nwhile True: chunks.append(bytearray(8 << 20))']);
    expect(r.oomKilled).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    expect(r.peakMemoryBytes).toBeGreaterThan(limit * 0.8);
    expect(r.peakMemoryBytes).toBeLessThanOrEqual(limit * 1.05);
    expect(r.caveats).toEqual([]);
  });

  it('stops a disk fill at the disk limit', async () => {
    const r = await run({ limits: { disk: '8M' } }, ['sh', '-c', 'dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1 | grep -o "No space left on device"; du -k /tmp/fill | cut -f1']);
    const [msg, kb] = r.stdout.trim().split('\n');
    expect(msg).toBe('No space left on device');
    expect(Number(kb)).toBeLessThanOrEqual(8 * 1024);
  });

  it('stops a CPU spin at the timeout', async () => {
    const r = await run({ timeout: '400ms' }, ['sh', '-c', 'while :; do :; done']);
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    expect(r.wallTimeMs).toBeLessThan(3000);
  });

  it.skipIf(!cgroups)('holds a CPU share', async () => {
    const r = await run({ limits: { cpus: 0.25 }, timeout: '1s' }, ['sh', '-c', 'while :; do :; done']);
    const cpu = r.cpuTimeMs.user + r.cpuTimeMs.system;
    expect(r.timedOut).toBe(true);
    expect(cpu).toBeLessThan(r.wallTimeMs * 0.45);
  });

  it('truncates an output flood at the cap and says so', async () => {
    const r = await run({ limits: { maxOutputBytes: '64k' } }, ['sh', '-c', 'yes corral | head -c 10000000; echo done >&2']);
    expect(r.stdout.length).toBe(64 << 10);
    expect(r.stderr).toBe('done\n');
    expect(r.outputTruncated).toBe(true);
    expect(r.limits.maxOutputBytes).toBe(64 << 10);
  });

  it('reports the limits in force', async () => {
    const r = await run({ limits: { memory: '256M', pids: 64, openFiles: 100 }, timeout: '5s' }, ['true']);
    expect(r.limits.rlimits.openFiles).toBe(100);
    expect(r.limits.timeoutMs).toBe(5000);
    if (cgroups) expect(r.limits.cgroup).toEqual({ memory: 256 << 20, pids: 64 });
  });
});

describe('spawn', () => {
  it('streams output as it is produced, before the command exits', async () => {
    const p = spawn({}, ['sh', '-c', 'echo first; sleep 1; echo second']);
    const t0 = Date.now();
    const first = await new Promise<number>((resolve) => p.stdout.once('data', () => resolve(Date.now() - t0)));
    const r = await p.wait();
    expect(first).toBeLessThan(800);
    expect(r.wallTimeMs).toBeGreaterThan(900);
    expect(r.exitCode).toBe(0);
  });

  it('is async-iterable and takes stdin', async () => {
    const p = spawn({}, ['tr', 'a-z', 'A-Z']);
    p.stdin!.end('hello\n');
    let out = '';
    for await (const chunk of p.stdout) out += chunk;
    expect(out).toBe('HELLO\n');
    expect((await p.wait()).exitCode).toBe(0);
  });

  it('pauses and resumes the whole tree', async () => {
    const p = spawn({}, ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done']);
    const seen: number[] = [];
    p.stdout.on('data', (d: Buffer) => seen.push(...String(d).trim().split('\n').map(Number)));
    await new Promise((r) => setTimeout(r, 300));
    await p.pause();
    await new Promise((r) => setTimeout(r, 100));
    const atPause = seen.length;
    await new Promise((r) => setTimeout(r, 400));
    expect(seen.length).toBe(atPause);
    await p.resume();
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.length).toBeGreaterThan(atPause);
    p.kill('SIGKILL');
    expect((await p.wait()).signal).toBe('SIGKILL');
  });

  it('kills with a signal and honours AbortSignal', async () => {
    const p = spawn({}, ['sleep', '30']);
    await new Promise((r) => p.once('spawn', r));
    expect(p.pid).toBeGreaterThan(0);
    p.kill();
    expect((await p.wait()).signal).toBe('SIGTERM');
    const ac = new AbortController();
    const q = spawn({}, ['sleep', '30'], { signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await expect(q.wait()).rejects.toMatchObject({ code: 'ABORTED' });
    const early = new AbortController();
    early.abort();
    await expect(run({}, ['sleep', '30'], { signal: early.signal })).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('gives the command a terminal of its own, with resize', async () => {
    const p = spawn({}, ['sh', '-c', 'tty; stty size; test -t 0 && echo interactive; read x; echo "got $x"; stty size'], { pty: { cols: 100, rows: 30 } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    await new Promise((r) => p.once('spawn', r));
    await new Promise((r) => setTimeout(r, 200));
    await p.resize(120, 40);
    p.stdin!.write('hello\n');
    expect((await p.wait()).exitCode).toBe(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(out).toBe('/dev/pts/0\r\n30 100\r\ninteractive\r\nhello\r\ngot hello\r\n40 120\r\n');
  });

  it('reports a command that cannot start', async () => {
    const p = spawn({}, ['no-such-command-xyz']);
    await expect(p.wait()).rejects.toMatchObject({ code: 'SPAWN_FAILED' });
  });
});

describe('CLI', () => {
  it('prints statistics with --stats and --stats=json', () => {
    const human = runCli(['run', '--stats', '--', 'true']);
    expect(human.stderr).toMatch(/corral: exit 0; .* ms wall/);
    const json = runCli(['run', '--stats=json', '--memory', '128M', '--pids', '32', '--', 'true']);
    const stats = JSON.parse(json.stderr.trim().split('\n').pop()!);
    expect(stats.exitCode).toBe(0);
    expect(stats.limits.cgroup?.pids ?? stats.limits.rlimits.processes).toBe(32);
  });
});
