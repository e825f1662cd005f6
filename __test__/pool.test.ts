// The warm pool: pooled runs get the same isolation as cold ones, never share
// anything with each other, survive crashes, and close() leaves nothing behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import { join } from 'node:path';
import { corral, helperProcesses, helpersOf, hostDir } from './helpers';

const { Pool, forkExec } = corral;
const sh = (s: string) => ['/bin/sh', '-c', s];

/** The sandboxes' inits: every process of this process's helper but the helper itself. */
const helperChildren = () => helperProcesses(process.pid).slice(1);

describe('a warm pool', () => {
  let dir: ReturnType<typeof hostDir>;
  let pool: InstanceType<typeof Pool>;
  let server: Server;
  let port = 0;
  beforeAll(async () => {
    dir = hostDir();
    writeFileSync(join(dir.path, 'file'), 'original');
    pool = new Pool({ fs: { read: [dir.path] }, timeout: '10s' }, { size: 3 });
    server = createServer((s) => s.end('host\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    await pool.close();
    server.close();
    dir.cleanup();
  });

  it('isolates like a cold sandbox', async () => {
    const r = await pool.run(sh(`echo $$; hostname; echo evil > ${dir.path}/file; ls /proc | grep -c '^[0-9]'; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; unshare -U true 2>&1; ls /proc/self/fd | tr '\\n' ' '`));
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('2');
    expect(lines[1]).toBe('corral');
    expect(Number(lines[2])).toBeLessThan(6);
    expect(r.stdout).toMatch(/NoNewPrivs:\s+1/);
    expect(r.stdout).toMatch(/Seccomp:\s+2/);
    expect(r.stdout).toMatch(/Operation not permitted/);
    expect(lines.at(-1)!.trim()).toBe('0 1 2 3');
    expect(r.stderr).toMatch(/Read-only file system/);
    expect(readFileSync(join(dir.path, 'file'), 'utf8')).toBe('original');
    const net = await pool.run(['bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port} && cat <&3`]);
    expect(net.stdout).toBe('');
  });

  it('kills a whole tree on timeout', async () => {
    const slow = new Pool({ timeout: '300ms' }, { size: 1 });
    const r = await slow.run(sh('sleep 30 & sleep 30'));
    await slow.close();
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGKILL');
  });

  it('never lets two pooled commands see each other', async () => {
    const first = pool.run(sh('echo secret > /tmp/mine; python3 -m http.server 18766 --bind 127.0.0.1 >/dev/null 2>&1 & sleep 1; ls /proc | grep -c "^[0-9]"'));
    await new Promise((r) => setTimeout(r, 400));
    const second = await pool.run(['bash', '-c', 'ls /tmp; ls /proc | grep -c "^[0-9]"; exec 3<>/dev/tcp/127.0.0.1/18766 && echo reached']);
    expect(second.stdout.trim()).toBe(String(Number(second.stdout.trim())));
    expect(Number(second.stdout.trim())).toBeLessThan(6);
    expect(second.stdout).not.toContain('reached');
    expect(second.stdout).not.toContain('mine');
    await first;
  });

  it('applies a network allow-list, each sandbox with its own proxy and violations', async () => {
    const { createServer } = await import('node:http');
    const server = createServer((req, res) => res.end(`hello ${req.headers.host}\n`));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const net = new Pool({ network: { allow: ['allowed.test'], hosts: { 'allowed.test': '127.0.0.1', 'other.test': '127.0.0.1' } } }, { size: 2 });
    try {
      const curl = (host: string) => ['curl', '-s', '-S', '--max-time', '5', `http://${host}:${port}/`];
      const ok = await net.run(curl('allowed.test'));
      expect(ok.stdout).toBe(`hello allowed.test:${port}\n`);
      expect(ok.violations).toEqual([]);
      const refused = await net.run(curl('other.test'));
      expect(refused.stdout).not.toContain('hello');
      expect(refused.violations.map((v) => v.destination)).toEqual(['other.test']);
      const direct = await net.run(['bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port} && echo reached`]);
      expect(direct.stdout).not.toContain('reached');
    } finally {
      await net.close();
      server.close();
    }
  });

  it('takes per-command env, cwd and input, and reports like run()', async () => {
    const r = await pool.run(sh('echo $GREETING; pwd; cat'), { env: { GREETING: 'hi' }, cwd: '/tmp', input: 'in' });
    expect(r.stdout).toBe('hi\n/tmp\nin');
    expect(r.exitCode).toBe(0);
    expect(r.wallTimeMs).toBeGreaterThan(0);
  });

  it('survives a crashing command', async () => {
    const crash = await pool.run(sh('kill -SEGV $$'));
    expect(crash.signal).toBe('SIGSEGV');
    const missing = await pool.run(['no-such-command-xyz']).catch((e) => e);
    expect(missing).toMatchObject({ code: 'SPAWN_FAILED' });
    expect((await pool.run(['echo', 'ok'])).stdout).toBe('ok\n');
  });

  it('counts hits and misses', async () => {
    const s = pool.stats();
    expect(s.hits).toBeGreaterThan(0);
    expect(s.created).toBeGreaterThanOrEqual(s.hits);
  });
});

describe('closing and fan-out', () => {
  it('close() leaves no process or cgroup behind', async () => {
    const before = helperChildren().length;
    const p = new Pool({ limits: { memory: '128M' } }, { size: 4 });
    await p.run(['true']);
    await new Promise((r) => setTimeout(r, 200));
    expect(helperChildren().length).toBeGreaterThan(before);
    await p.close();
    // Each init reports before it exits; the helper reaps it a moment later.
    for (let i = 0; i < 100 && helperChildren().length > before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(helperChildren().length).toBe(before);
    await expect(p.run(['true'])).rejects.toMatchObject({ code: 'INVALID_STATE' });
    // This process's helper's sandbox cgroups (other processes on the host have their own).
    const [helper] = helpersOf(process.pid);
    expect(helper).toBeDefined();
    const leftovers = () =>
      ['/sys/fs/cgroup/memory/corral', '/sys/fs/cgroup/corral']
        .map((base) => join(base, `h${helper}`))
        .filter(existsSync)
        .flatMap((dir) => readdirSync(dir).filter((e) => /^s\d+$/.test(e)));
    // The helper answers as soon as init reports; the cgroup goes right after.
    for (let i = 0; i < 100 && leftovers().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(leftovers()).toEqual([]);
  });

  it('reads idleTimeout with the same duration parser as the policy', async () => {
    // '1h' and '90min' are durations everywhere else in a policy; a pool once refused them.
    for (const idleTimeout of ['1h', '90min', '1.5s', 2500]) {
      const p = new Pool({}, { size: 0, idleTimeout });
      await p.close();
    }
    expect(() => new Pool({}, { size: 0, idleTimeout: '5 weeks' })).toThrow(expect.objectContaining({ code: 'POLICY_INVALID', field: 'idleTimeout' }));
    expect(() => new Pool({}, { size: 0, idleTimeout: Number.NaN })).toThrow(expect.objectContaining({ code: 'POLICY_INVALID', field: 'idleTimeout' }));
  });

  it('forkExec runs n sandboxes of one policy with CLONE_ID', async () => {
    const outs = await forkExec({}, ['sh', '-c', 'echo $CLONE_ID $$'], 6);
    expect(outs.map((o) => o.stdout.trim()).sort()).toEqual(['0 2', '1 2', '2 2', '3 2', '4 2', '5 2']);
  });
});
