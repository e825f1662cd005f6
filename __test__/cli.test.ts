// The `corral` command line: exit codes, flags, check, profiles, help.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { root, runCli } from './helpers';

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
    const file = join(dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ hostname: 'fromfile' }));
    const r = runCli(['run', '--policy', file, '--', 'sh', '-c', 'hostname; cat'], { input: 'piped\n' });
    expect(r.stdout).toBe('fromfile\npiped\n');
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
});

describe('other commands', () => {
  it('check prints a capability table', () => {
    const r = runCli(['check']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Landlock ABI\s+\d/);
    expect(r.stdout).toMatch(/user namespaces\s+yes/);
    expect(JSON.parse(runCli(['check', '--json']).stdout).os).toBe('linux');
  });

  it('profiles lists the seccomp profiles', () => {
    const r = runCli(['profiles']);
    for (const p of ['strict', 'compute', 'default', 'network', 'permissive']) expect(r.stdout).toContain(p);
  });

  it('plan prints JSON with caveats', () => {
    const r = runCli(['plan', '--net', 'host']);
    expect(JSON.parse(r.stdout).caveats[0].code).toBe('HOST_NETWORK');
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
