// The same isolation, for an unprivileged user: the test drops to uid/gid 65534 with
// setpriv and runs a probe script against a copy of the built package that user can read.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chownSync, cpSync, mkdirSync, mkdtempSync, rmSync, chmodSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hasCommand, isRoot, prerequisite, root } from './helpers';

const NOBODY = 65534;
const why = !isRoot ? 'the tests are not running as root, so they cannot drop to another user' : !hasCommand('setpriv') ? 'setpriv (util-linux) is not installed' : '';
const ready = prerequisite('root and setpriv for the rootless tests', why || null);

describe.skipIf(!ready)('as an unprivileged user (uid 65534)', () => {
  let base = '';
  let result: Record<string, unknown> = {};

  beforeAll(() => {
    base = mkdtempSync('/var/tmp/corral-rootless-');
    chmodSync(base, 0o755);
    const pkg = join(base, 'pkg');
    for (const f of ['dist', 'package.json', 'binding.cjs', 'corral-helper', ...readdirSync(root).filter((f) => f.endsWith('.node'))]) {
      cpSync(join(root, f), join(pkg, f), { recursive: true });
    }
    cpSync(join(__dirname, 'fixtures', 'rootless-probe.cjs'), join(base, 'probe.cjs'));
    const scratch = join(base, 'scratch');
    mkdirSync(scratch);
    chownSync(scratch, NOBODY, NOBODY);
    const r = spawnSync('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', process.execPath, join(base, 'probe.cjs'), pkg, scratch], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, HOME: scratch },
      cwd: base,
      timeout: 60_000,
    });
    try {
      result = JSON.parse(r.stdout);
    } catch {
      result = { error: `probe printed ${JSON.stringify(r.stdout)} / ${r.stderr}` };
    }
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('probe ran', () => expect(result.error).toBeUndefined());
  it('user namespaces work without root', () => expect(result.caps).toMatchObject({ uid: NOBODY, userNamespaces: true }));
  it('runs a command as the same user inside', () => {
    expect(result.echo).toBe('hi\n');
    expect(result.uid).toBe(String(NOBODY));
  });
  it('cannot write outside the allowed paths, even where the user could', () => {
    expect(result.writeOutsideFailed).toBe(true);
    expect(result.outsideUnchanged).toBe(true);
    expect(result.allowedWritten).toBe(true);
  });
  it('cannot read a path that is not listed', () => expect(result.secretRead).toBe(''));
  it('has its own pid namespace and hostname', () => {
    expect(result.pid).toBe('2');
    expect(result.hostname).toBe('corral');
  });
  it('cannot reach the network', () => expect(result.network).toBe(''));
  it('is filtered by seccomp with no-new-privs', () => {
    expect(result.unshare).toMatch(/Operation not permitted/);
    expect(result.status).toMatch(/NoNewPrivs:\s+1/);
    expect(result.status).toMatch(/Seccomp:\s+2/);
  });
  it('inherits no descriptors', () => expect(result.fds).toEqual(['0', '1', '2', '3']));
  it('timeout kills the tree and nothing is left', () => {
    expect(result.timedOut).toBe(true);
    expect(result.leftovers).toBe('');
  });
  it('hides denied paths and keeps protected ones read-only', () => {
    expect(result.denied).toBe('');
    expect(result.protectRefused).toBe(true);
  });
  it('captures overlay writes and commits them', () => {
    expect(result.overlayChanges).toEqual(['deleted a.txt', 'added b.txt']);
    expect(result.untouchedBeforeCommit).toBe(true);
    expect(result.committed).toBe(true);
  });
  it('refuses host sockets unless allowed', () => {
    expect(result.socketDefault).toBe('refused');
    expect(result.socketAllowed).toBe('agent');
  });
  it('falls back to rlimits without cgroups, and says so', () => {
    expect(result.cgroupWritable).toBe(false);
    expect(result.memoryBomb).toEqual({ exitCode: 1, memoryError: true, caveats: ['MEMORY_PER_PROCESS'] });
    expect(result.spin).toEqual({ timedOut: true, signal: 'SIGKILL' });
  });
  it('runs presets and returns results as for root; strict refuses the missing cgroups', () => {
    expect(result.untrusted).toBe('ok\n0\n');
    expect(result.strictPreset).toBe('UNSUPPORTED');
    expect(result.all).toEqual({ all: '1\n2\n', failed: false });
    expect(result.openFiles).toMatchObject({ refused: 'POLICY_INVALID limits.openFiles' });
    expect((result.openFiles as { limit: number }).limit).toBeGreaterThan(16);
  });

  it('enforces the process limit without root, per sandbox, and says how', () => {
    expect(result.pidsCaveats).toEqual(['PIDS_BY_RLIMIT']);
    expect(result.pidsPerSandbox).toEqual(['done', 'done']);
    expect(result.forkBomb).toMatch(/Resource temporarily unavailable|Cannot fork|can't fork/i);
  });
  it('pauses a tree that forks as fast as it can, without a cgroup freezer, and resumes it', () => {
    // victimFast: another tenant's run beside the pause took less than 5 s (it took 21 s when
    // the helper walked the tree until it stopped growing).
    expect(result.pause).toEqual({ victimFast: true, stopped: true, resumed: true, end: 'SIGKILL' });
  });
  it('says its CPU and memory figures are estimates where no cgroup counted them', () => {
    const h = result.hiddenStats as { cgroup: unknown; statsEstimated: unknown; exitCode: number };
    expect(h.exitCode).toBe(0);
    if (h.cgroup === null) expect(h.statsEstimated).toEqual({ cpuTime: true, peakMemory: true });
    else expect(h.statsEstimated).toEqual({ cpuTime: false, peakMemory: false });
  });
});
