// Isolation against the real kernel, through the TypeScript API, as the user running the
// tests (root on CI). isolation.test.ts runs it on cold sandboxes, isolation-pool.test.ts
// on warm pooled ones (a pooled run isolates exactly like a cold one);
// rootless.test.ts repeats the essentials as an unprivileged user.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync, copyFileSync, chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import { join } from 'node:path';
import { corral, helperProcesses, hostDir, hostProcesses } from './helpers';

type Run = typeof corral.run;
const sh = (script: string) => ['/bin/sh', '-c', script];

/** The suite, with `run` either corral's cold `run()` or one through a warm pool. */
export function isolationSuite(run: Run, mode: 'cold' | 'pool'): void {
  describe('running a command', () => {
    it('runs a command and returns its output and status', async () => {
      const r = await run({}, sh('echo hi; echo oops >&2; exit 3'));
      expect(r.stdout).toBe('hi\n');
      expect(r.stderr).toBe('oops\n');
      expect(r.exitCode).toBe(3);
      expect(r.signal).toBeNull();
      expect(r.timedOut).toBe(false);
      expect(r.wallTimeMs).toBeGreaterThan(0);
      expect(r.peakMemoryBytes).toBeGreaterThan(0);
      expect(r.command).toEqual(sh('echo hi; echo oops >&2; exit 3'));
    });

    it('measures the CPU time the command used', async () => {
      // A loop of a few hundred thousand shell steps takes tens of ms of CPU anywhere.
      const r = await run({}, sh('i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'));
      expect(r.exitCode).toBe(0);
      expect(r.cpuTimeMs.user + r.cpuTimeMs.system).toBeGreaterThan(0);
      expect(r.cpuTimeMs.user + r.cpuTimeMs.system).toBeLessThanOrEqual(r.wallTimeMs * 2 + 1);
    });

    it('feeds stdin and can return Buffers', async () => {
      const r = await run({}, ['/bin/cat'], { input: 'from stdin', encoding: 'buffer' });
      expect(Buffer.isBuffer(r.stdout)).toBe(true);
      expect(r.stdout.toString()).toBe('from stdin');
    });

    it('reports death by signal', async () => {
      const r = await run({}, sh('kill -TERM $$'));
      expect(r.exitCode).toBeNull();
      expect(r.signal).toBe('SIGTERM');
    });

    it('finds commands on the sandbox PATH and reports missing ones', async () => {
      expect((await run({}, ['true'])).exitCode).toBe(0);
      await expect(run({}, ['no-such-command-xyz'])).rejects.toMatchObject({ code: 'SPAWN_FAILED', errno: 2 });
    });
  });

  describe('file system', () => {
    let outside: ReturnType<typeof hostDir>;
    let allowed: ReturnType<typeof hostDir>;
    beforeAll(() => {
      outside = hostDir();
      allowed = hostDir();
      writeFileSync(join(outside.path, 'file'), 'original');
    });
    afterAll(() => {
      outside.cleanup();
      allowed.cleanup();
    });

    it('writes inside a granted path', async () => {
      const r = await run({ fs: { write: [allowed.path] } }, sh(`echo data > ${allowed.path}/new && cat ${allowed.path}/new`));
      expect(r.exitCode).toBe(0);
      expect(readFileSync(join(allowed.path, 'new'), 'utf8')).toBe('data\n');
    });

    it('cannot write outside the allowed paths, and the host is untouched', async () => {
      const r = await run({ fs: { read: [outside.path], write: [allowed.path] } }, sh(`echo evil > ${outside.path}/file; echo evil > ${outside.path}/added; rm -f ${outside.path}/file; touch /usr/corral-x`));
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/Read-only file system|Permission denied/);
      expect(readFileSync(join(outside.path, 'file'), 'utf8')).toBe('original');
      expect(existsSync(join(outside.path, 'added'))).toBe(false);
      expect(existsSync('/usr/corral-x')).toBe(false);
    });

    it('cannot read a path that is not listed', async () => {
      const r = await run({}, sh(`cat ${outside.path}/file; ls ${outside.path}`));
      expect(r.exitCode).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/No such file or directory/);
    });

    it('shows only the mount view at the root', async () => {
      const r = await run({}, ['ls', '/']);
      expect(r.stdout.trim().split('\n').sort()).toEqual(expect.arrayContaining(['bin', 'dev', 'etc', 'proc', 'tmp', 'usr']));
      expect(r.stdout).not.toMatch(/\b(home|root|var|sys|run)\b/);
    });

    it('hides secrets in /etc', async () => {
      const r = await run({}, sh('cat /etc/shadow | wc -c; test -r /etc/passwd && echo passwd'));
      expect(r.stdout).toBe('0\npasswd\n');
    });

    it('gives a private /tmp', async () => {
      writeFileSync('/tmp/corral-host-only', 'x');
      try {
        const r = await run({}, sh('ls /tmp; echo scratch > /tmp/s && cat /tmp/s'));
        expect(r.stdout).toBe('scratch\n');
        const after = await run({}, sh('ls /tmp'));
        expect(after.stdout).toBe('');
      } finally {
        rmSync('/tmp/corral-host-only', { force: true });
      }
    });

    it('runs programs from writable paths unless W^X or noexec says no', async () => {
      copyFileSync('/bin/true', join(allowed.path, 'mytrue'));
      chmodSync(join(allowed.path, 'mytrue'), 0o755);
      const ok = await run({ fs: { write: [allowed.path] } }, [join(allowed.path, 'mytrue')]);
      expect(ok.exitCode).toBe(0);
      for (const fs of [{ write: [allowed.path], execWritable: false }, { write: [allowed.path], noexec: [allowed.path] }]) {
        const denied = await run({ fs }, [join(allowed.path, 'mytrue')]).catch((e) => e);
        expect(denied).toMatchObject({ code: 'SPAWN_FAILED', errno: 13 });
      }
      // A read grant never runs programs; exec does.
      const read = await run({ fs: { read: [allowed.path] } }, [join(allowed.path, 'mytrue')]).catch((e) => e);
      expect(read).toMatchObject({ code: 'SPAWN_FAILED', errno: 13 });
      expect((await run({ fs: { exec: [allowed.path] } }, [join(allowed.path, 'mytrue')])).exitCode).toBe(0);
    });

    it('refuses a granted path that became a symlink after planning', async () => {
      // A grant means the path as written (`.` and `..` are spelling); the mount view opens
      // sources without following any symlink, so a link swapped in after planning cannot
      // redirect it (crates/linux/tests/sandbox.rs swaps one in).
      const target = join(allowed.path, 'real');
      mkdirSync(target);
      const plan = corral.plan({ fs: { write: [join(allowed.path, '.', 'real')] } });
      expect(plan.sandbox.mounts.some((m) => m.type === 'bind' && m.target === target && m.writable)).toBe(true);
    });
  });

  describe('processes, host name, identity', () => {
    it('sees only its own processes (own pid namespace) with the command as pid 2', async () => {
      const r = await run({}, sh('echo $$; ls /proc | grep -E "^[0-9]+$" | wc -l'));
      const [pid, count] = r.stdout.trim().split('\n').map(Number);
      expect(pid).toBe(2);
      expect(count).toBeLessThan(6);
    });

    it('has its own hostname', async () => {
      expect((await run({}, ['hostname'])).stdout.trim()).toBe('corral');
      expect((await run({ hostname: 'box-1' }, ['hostname'])).stdout.trim()).toBe('box-1');
    });

    it('runs as the caller, with no capabilities, no-new-privs and seccomp', async () => {
      const r = await run({}, sh('id -u; grep -E "^(NoNewPrivs|Seccomp|CapEff|CapBnd):" /proc/self/status'));
      const lines = r.stdout.trim().split('\n');
      expect(Number(lines[0])).toBe(process.getuid!());
      expect(r.stdout).toMatch(/NoNewPrivs:\s+1/);
      expect(r.stdout).toMatch(/Seccomp:\s+2/);
      expect(r.stdout).toMatch(/CapEff:\s+0000000000000000/);
      expect(r.stdout).toMatch(/CapBnd:\s+0000000000000000/);
    });

    it('inherits no file descriptors besides stdio', async () => {
      const r = await run({}, sh('ls /proc/self/fd'));
      // ls itself holds one descriptor on the directory it lists.
      expect(r.stdout.trim().split('\n').map(Number).sort()).toEqual([0, 1, 2, 3]);
    });

    it('starts in a clean environment', async () => {
      process.env.CORRAL_TEST_SECRET = 'hunter2';
      const r = await run({ env: { FOO: 'bar' }, inheritEnv: ['CORRAL_TEST_SECRET'] }, ['env']);
      const names = r.stdout.trim().split('\n').map((l) => l.split('=')[0]).sort();
      expect(names).toEqual(['CORRAL_TEST_SECRET', 'FOO', 'HOME', 'LANG', 'PATH', ...(process.env.TERM ? ['TERM'] : []), ...(process.env.TZ ? ['TZ'] : [])].sort());
      const clean = await run({}, ['env']);
      expect(clean.stdout).not.toContain('hunter2');
    });

    it('leaves no process behind when the command exits', async () => {
      const marker = `${Date.now() % 100000}.5`;
      const r = await run({}, sh(`sleep ${marker} & echo started`));
      expect(r.stdout).toBe('started\n');
      expect(hostProcesses(`sleep ${marker}`)).toEqual([]);
    });

    it('kills the whole process tree on timeout', async () => {
      const marker = `${Date.now() % 100000}.7`;
      const t0 = Date.now();
      const r = await run({ timeout: '300ms' }, sh(`sleep ${marker} & sleep ${marker}; echo never`));
      expect(r.timedOut).toBe(true);
      expect(r.signal).toBe('SIGKILL');
      expect(r.stdout).toBe('');
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(hostProcesses(`sleep ${marker}`)).toEqual([]);
    });
  });

  describe('network', () => {
    let server: Server;
    let port = 0;
    beforeAll(async () => {
      server = createServer((s) => s.end('hello from host\n'));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as { port: number }).port;
    });
    afterAll(() => server.close());

    it('cannot reach the host network by default', async () => {
      const r = await run({}, ['bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port} && cat <&3`]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stdout).not.toContain('hello from host');
      const ifaces = await run({}, ['cat', '/proc/net/dev']);
      expect(ifaces.stdout).toMatch(/\blo:/);
      expect(ifaces.stdout.split('\n').filter((l) => l.includes(':')).length).toBe(1);
    });

    it('has a working loopback of its own', async () => {
      const r = await run({}, ['bash', '-c', 'python3 -m http.server 18765 --bind 127.0.0.1 >/dev/null 2>&1 & for i in $(seq 50); do exec 3<>/dev/tcp/127.0.0.1/18765 && break; sleep 0.1; done; printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3; head -1 <&3']);
      expect(r.stdout).toMatch(/HTTP\/1\.0 200/);
    });

    it('shares the host network only when asked, with a caveat', async () => {
      const r = await run({ network: 'host' }, ['bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port} && cat <&3`]);
      expect(r.stdout).toBe('hello from host\n');
      expect(r.caveats.map((c) => c.code)).toContain('HOST_NETWORK');
    });
  });

  describe('seccomp', () => {
    it('refuses blocked system calls with EPERM', async () => {
      const r = await run({}, sh('unshare -U true; mount -t tmpfs none /tmp'));
      expect(r.stderr).toMatch(/unshare failed: Operation not permitted/);
      expect(r.stderr).toMatch(/mount.*(permission denied|Operation not permitted|must be superuser)/i);
    });

    it('blocks network sockets in the compute profile', async () => {
      const r = await run({ seccomp: 'compute' }, ['python3', '-c', 'import socket\ntry:\n  socket.socket()\nexcept OSError as e: print(e.errno)']);
      expect(r.stdout.trim()).toBe('1');
    });

    it('applies custom deny lists', async () => {
      const r = await run({ seccomp: { profile: 'default', deny: ['uname'] } }, ['python3', '-c', 'import os\ntry:\n  os.uname()\nexcept OSError as e: print(e.errno)']);
      expect(r.stdout.trim()).toBe('1');
    });

    it('runs ordinary programs under the strict profile', async () => {
      const r = await run({ seccomp: 'strict' }, sh('echo $((6*7)) | cat; ls /usr >/dev/null && echo ok'));
      expect(r.stdout).toBe('42\nok\n');
    });
  });

  describe('limits', () => {
    it('limits open files and file size', async () => {
      const r = await run({ limits: { openFiles: 32, fileSize: '1M' } }, sh('ulimit -n; dd if=/dev/zero of=/tmp/big bs=1M count=4 2>/dev/null; echo dd=$?; ls -l /tmp/big | awk "{print \\$5}"'));
      expect(r.stdout).toBe('32\ndd=153\n1048576\n');
    });

    it('limits CPU time', async () => {
      const r = await run({ limits: { cpuTime: '1s' }, timeout: '20s' }, sh('while :; do :; done'));
      expect(r.signal).toMatch(/SIGXCPU|SIGKILL/);
      expect(r.timedOut).toBe(false);
    });

    it('limits memory', async () => {
      const r = await run({ limits: { memory: '64M' } }, ['python3', '-c', 'b = bytearray(200 * 1024 * 1024)']);
      // A cgroup OOM-kills the tree; without one, RLIMIT_AS makes the allocation fail.
      if (r.limits.cgroup) expect(r.oomKilled).toBe(true);
      else expect(r.stderr).toMatch(/MemoryError/);
      expect(r.exitCode).not.toBe(0);
    });

    it('caps captured output', async () => {
      const r = await run({ limits: { maxOutputBytes: '1k' } }, sh('head -c 100000 /dev/zero'));
      expect(r.stdout.length).toBe(1024);
      expect(r.outputTruncated).toBe(true);
    });
  });

  describe.skipIf(mode === 'pool')('no orphans', () => {
    it('a Node process killed with SIGKILL mid-run leaves no sandboxed process behind', async () => {
      const { spawn } = await import('node:child_process');
      const { root } = await import('./helpers');
      const marker = `${Date.now() % 100000}.3`;
      const script = `require(${JSON.stringify(root)}).run({}, ['sh','-c','sleep ${marker} & sleep ${marker}; true']); setInterval(() => {}, 1000)`;
      const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
      try {
        for (let i = 0; i < 100 && hostProcesses(`sleep ${marker}`).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
        expect(hostProcesses(`sleep ${marker}`).length).toBe(2);
      } finally {
        child.kill('SIGKILL');
      }
      for (let i = 0; i < 100 && hostProcesses(`sleep ${marker}`).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(hostProcesses(`sleep ${marker}`)).toEqual([]);
      expect(helperProcesses(child.pid!)).toEqual([]);
    });
  });
}
