// The `corral` command line: exit codes, flags, check, profiles, help.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { cli, corral, hostDir, isRoot, prerequisite, root, runCli } from './helpers';

const corralPlanTimeout = (policy: object) => corral.plan(policy).sandbox.timeoutMs;

describe('corral run', () => {
  it('runs the quick-start command', () => {
    const r = runCli(['run', '--write', '/tmp', '--', '/bin/sh', '-c', 'echo hi']);
    expect(r.stdout).toBe('hi\n');
    expect(r.status).toBe(0);
  });

  it('passes the exit code through', () => {
    expect(runCli(['run', '--', 'sh', '-c', 'exit 7']).status).toBe(7);
  });

  it('exits 124 on timeout', () => {
    const r = runCli(['run', '--timeout', '200ms', '--', 'sleep', '10']);
    expect(r.status).toBe(124);
    expect(r.stderr).toMatch(/timed out/);
  });

  it('exits 128+N when the command dies by signal N', () => {
    expect(runCli(['run', '--', 'sh', '-c', 'kill -KILL $$']).status).toBe(137);
  });

  it('reads a bare --timeout as seconds, as timeout(1) does, and says the unit', () => {
    // `--timeout 2` once meant 2 ms.
    expect(JSON.parse(runCli(['plan', '--json', '--timeout', '2']).stdout).sandbox.timeoutMs).toBe(2000);
    expect(JSON.parse(runCli(['plan', '--json', '--timeout', '1.5']).stdout).sandbox.timeoutMs).toBe(1500);
    expect(JSON.parse(runCli(['plan', '--json', '--timeout', '250ms']).stdout).sandbox.timeoutMs).toBe(250);
    expect(JSON.parse(runCli(['plan', '--json', '--cpu-time', '3']).stdout).sandbox.rlimits.cpuSeconds).toBe(3);
    expect(runCli(['run', '--timeout', '2', '--', 'sleep', '0.3']).status).toBe(0);
    const r = runCli(['run', '--timeout', '1', '--', 'sleep', '30']);
    expect(r.status).toBe(124);
    expect(r.stderr).toBe('corral: timed out after 1 s\n');
    // In a policy and in the API a number stays milliseconds.
    expect(corralPlanTimeout({ timeout: 2 })).toBe(2);
  });

  it('exits 127 for a missing command and 125 for its own errors, with one line', () => {
    const missing = runCli(['run', '--', 'no-such-cmd-xyz']);
    expect(missing.status).toBe(127);
    const bad = runCli(['run', '--memory', 'lots', '--', 'true']);
    expect(bad.status).toBe(125);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/limits\.memory/);
  });

  it('maps flags to the policy', () => {
    const r = runCli(['run', '--hostname', 'h1', '--env', 'A=1', '--nofile', '64', '--', 'sh', '-c', 'hostname; echo $A; ulimit -n']);
    expect(r.stdout).toBe('h1\n1\n64\n');
  });

  it('reads a policy file and streams stdin', () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-cli-'));
    try {
      const file = join(dir, 'policy.json');
      writeFileSync(file, JSON.stringify({ hostname: 'fromfile' }));
      const r = runCli(['run', '--policy', file, '--', 'sh', '-c', 'hostname; cat'], { input: 'piped\n' });
      expect(r.stdout).toBe('fromfile\npiped\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives the command a terminal with --pty (the default on a terminal) and none with --no-pty', () => {
    expect(runCli(['run', '--pty', '--', 'sh', '-c', 'tty; exit 4'])).toMatchObject({ stdout: '/dev/pts/0\r\n', status: 4 });
    expect(runCli(['run', '--no-pty', '--', 'sh', '-c', 'tty']).stdout).toBe('not a tty\n');
  });

  it('caps output with --max-output', () => {
    const r = runCli(['run', '--max-output', '10', '--', 'sh', '-c', 'echo 0123456789abcdef']);
    expect(r.stdout).toBe('0123456789');
    expect(r.stderr).toMatch(/truncated/);
  });

  it('streams stdin to the command when output is capped', () => {
    // `echo hello | corral run --max-output 1M -- cat` once printed nothing.
    expect(runCli(['run', '--max-output', '1M', '--', 'cat'], { input: 'hello\n' })).toMatchObject({ stdout: 'hello\n', status: 0 });
  });

  it('exits 126 when the command may not run', () => {
    const dir = hostDir();
    try {
      writeFileSync(join(dir.path, 'tool'), '#!/bin/sh\necho ran\n');
      chmodSync(join(dir.path, 'tool'), 0o755);
      const r = runCli(['run', '--read', dir.path, '--', join(dir.path, 'tool')]);
      expect(r.status).toBe(126);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    } finally {
      dir.cleanup();
    }
  });

  describe.skipIf(!prerequisite('root, to make a directory the sandbox cannot search', isRoot ? null : 'not running as root'))('a failure of corral\'s own setup', () => {
    it('exits 125 with one line even when its errno is EACCES', () => {
      // Hiding a file inside a directory that only uid 65534 may search fails in the
      // sandbox's setup with EACCES; that once exited 126 as if the command could not run.
      const dir = hostDir();
      try {
        mkdirSync(join(dir.path, 'u'));
        writeFileSync(join(dir.path, 'u', 'secret'), 's');
        chownSync(join(dir.path, 'u'), 65534, 65534);
        chmodSync(join(dir.path, 'u'), 0o700);
        const r = runCli(['run', '--read', dir.path, '--deny', join(dir.path, 'u', 'secret'), '--', 'true']);
        if (r.status === 0) return; // setup learnt to leave an unsearchable path alone: nothing failed
        expect(r.status).toBe(125);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
      } finally {
        dir.cleanup();
      }
    });
  });
});

describe('policy files and flags', () => {
  let dir = '';
  const file = (name: string, content: string) => {
    writeFileSync(join(dir, name), content);
    return join(dir, name);
  };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'corral-cli-policy-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([['null'], ['5'], ['"s"'], ['true'], ['[1]'], ['{ not json']])('refuses a policy file holding %s in one line, without a stack trace', (content) => {
    const r = runCli(['run', '--policy', file('p.json', content), '--', 'true']);
    expect(r.status).toBe(125);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^corral: policy: /);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('never reshapes a policy file value while merging flags into it', () => {
    // A string where a list belongs was once spread into characters, so ".env" was no
    // longer hidden.
    const f = file('deny.json', JSON.stringify({ fs: { read: [dir], deny: `${dir}/.env` } }));
    for (const args of [['--deny', '/nonexistent'], []]) {
      const r = runCli(['run', '--policy', f, ...args, '--', 'true']);
      expect(r.status).toBe(125);
      expect(r.stderr).toMatch(/^corral: fs\.deny: /);
    }
    const env = file('env.json', JSON.stringify({ env: ['A=1'] }));
    expect(runCli(['run', '--policy', env, '--env', 'B=2', '--', 'true']).stderr).toMatch(/^corral: env: /);
  });

  it("keeps the policy file's network deny list and hosts when flags add to the allow-list", () => {
    const f = file('net.json', JSON.stringify({ network: { allow: ['a.test'], deny: ['bad.test'], hosts: { 'a.test': '127.0.0.1' } } }));
    for (const extra of [['--net', 'none', '--net-allow', 'c.test'], ['--net-allow', 'c.test']]) {
      const p = JSON.parse(runCli(['plan', '--json', '--policy', f, ...extra]).stdout);
      const rule = (name: string) => ({ rule: name, matches: `the name ${name}` });
      expect(p.network).toEqual({ allow: [rule('a.test'), rule('c.test')], deny: [rule('bad.test')], hosts: { 'a.test': ['127.0.0.1'] } });
    }
    // `--net none` alone means no network, whatever the file allowed.
    expect(JSON.parse(runCli(['plan', '--json', '--policy', f, '--net', 'none']).stdout).sandbox.network).toBe('isolated');
  });

  it('reads a command line the same way for plan and run', () => {
    // Flags after the command belong to the command: `plan` once took `--deny` as its own.
    writeFileSync(join(dir, '.env'), 'TOKEN=secret\n');
    const line = ['--read', dir, 'sh', '-c', 'for a; do case $a in --*) ;; *) cat $a;; esac; done', 'sh', '--deny', join(dir, '.env')];
    const p = JSON.parse(runCli(['plan', '--json', ...line]).stdout);
    expect(p.sandbox.argv).toEqual(line.slice(2));
    expect(p.sandbox.mounts.some((m: { type: string; target: string }) => m.type === 'mask' && m.target === join(dir, '.env'))).toBe(false);
    expect(runCli(['run', ...line]).stdout).toBe('TOKEN=secret\n');
  });
});

describe('other commands', () => {
  it('check prints a capability table', () => {
    const r = runCli(['check']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Landlock ABI\s+\d/);
    expect(r.stdout).toMatch(/user namespaces\s+yes/);
    expect(JSON.parse(runCli(['check', '--json']).stdout).os).toBe('linux');
  });

  // In a user namespace of its own the test may lower the namespace limits (they are per
  // user namespace), as a host that has used them up would be.
  const ownUserns = spawnSync('unshare', ['-Ur', 'true']).status === 0;
  const limits = prerequisite('unshare -Ur (a user namespace of the test\'s own)', ownUserns ? null : 'unshare -Ur failed');
  it.runIf(limits)('check exits 1 when no sandbox can be created, naming the host setting', () => {
    const inLimitedUserns = (sysctl: string, value: number, ...args: string[]) =>
      spawnSync('unshare', ['-Urm', 'sh', '-c', `echo ${value} > /proc/sys/${sysctl.replace(/\./g, '/')} && exec "$@"`, 'sh', process.execPath, cli, 'check', ...args], {
        encoding: 'utf8',
        cwd: root,
      });
    // The test's own mount namespace already counts against a limit of 1: the next is ENOSPC.
    const full = inLimitedUserns('user.max_mnt_namespaces', 1);
    expect(full.status).toBe(1);
    expect(full.stdout).toMatch(/user namespaces\s+no/);
    expect(full.stderr).toMatch(/no sandbox can be created here: .*sysctl user\.max_mnt_namespaces=1 \(ENOSPC/);
    const off = inLimitedUserns('user.max_user_namespaces', 0, '--json');
    expect(off.status).toBe(1);
    expect(JSON.parse(off.stdout).userNamespaces).toBe(false);
    expect(off.stderr).toMatch(/user\.max_user_namespaces=0/);
  });

  it('profiles lists the seccomp profiles', () => {
    const r = runCli(['profiles']);
    for (const p of ['strict', 'compute', 'default', 'network', 'permissive']) expect(r.stdout).toContain(p);
  });

  it('plan prints a summary people can read, and JSON with --json', () => {
    const r = runCli(['plan', '--net-allow', 'example.test:443', '--net-deny', 'bad.example.test', '--memory', '256M', '--seccomp', 'strict', '--timeout', '5', '--', 'make', 'test']);
    expect(r.status).toBe(0);
    const text = r.stdout;
    expect(text).toMatch(/^command +make test$/m);
    expect(text).toMatch(/^network +allow-list through corral's proxy/m);
    expect(text).toMatch(/^ +allow +example\.test:443 \(the name example\.test, port 443\)$/m);
    expect(text).toMatch(/^ +deny +bad\.example\.test \(the name bad\.example\.test\)$/m);
    expect(text).toMatch(/^mounts +\d+ steps/m);
    expect(text).toMatch(/^ +ro\+exec +\/usr$/m);
    expect(text).toMatch(/^ +hidden +\/etc\/shadow$/m);
    expect(text).toMatch(/^landlock +ABI \d+/m);
    expect(text).toMatch(/^seccomp +profile strict: allows \d+ system calls and refuses the rest$/m);
    expect(text).toMatch(/^limits +memory 256M/m);
    expect(text).toMatch(/timeout 5 s$/m);
    expect(text).toMatch(/^caveats +none/m);
    expect(text.split('\n').length).toBeLessThan(80);
    const host = runCli(['plan', '--net', 'host']);
    expect(host.stdout).toMatch(/^ +HOST_NETWORK \(network\): /m);
    const json = JSON.parse(runCli(['plan', '--json', '--net', 'host']).stdout);
    expect(json.caveats[0].code).toBe('HOST_NETWORK');
    expect(json.seccompCounts.refused).toBeGreaterThan(10);
  });

  it('answers a mistyped flag or command with one line and a suggestion', () => {
    const flag = runCli(['run', '--wirte', '/tmp', '--', 'true']);
    expect(flag.status).toBe(125);
    expect(flag.stdout).toBe('');
    expect(flag.stderr).toBe("corral run: unknown option '--wirte'; did you mean --write?\n");
    expect(runCli(['plan', '--jsno']).stderr).toBe("corral plan: unknown option '--jsno'; did you mean --json?\n");
    expect(runCli(['rnu']).stderr).toBe("corral: unknown command 'rnu'; did you mean run?\n");
    expect(runCli(['run', '--zzz']).stderr).toBe("corral run: unknown option '--zzz' (see corral run --help)\n");
  });

  it('has --help everywhere', () => {
    for (const args of [['--help'], ['run', '--help'], ['check', '--help'], ['plan', '--help'], ['profiles', '--help']]) {
      const r = runCli(args);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/Usage: corral/);
    }
  });
});

describe('module formats', () => {
  it('works from require() and import', () => {
    const cjs = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(root)}).run({}, ['echo','cjs']).then(r => process.stdout.write(r.stdout))`], { encoding: 'utf8', cwd: root });
    expect(cjs.stdout).toBe('cjs\n');
    const esm = spawnSync(process.execPath, ['--input-type=module', '-e', `import { run, CorralError } from ${JSON.stringify(join(root, 'dist', 'index.mjs'))}; const r = await run({}, ['echo','esm']); process.stdout.write(r.stdout + typeof CorralError)`], { encoding: 'utf8', cwd: root });
    expect(esm.stdout).toBe('esm\nfunction');
  });
});
