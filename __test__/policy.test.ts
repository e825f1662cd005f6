// Bad policies and bad commands get a typed CorralError naming the field, never a crash.
import { describe, expect, it } from 'vitest';
import { corral } from './helpers';

const { run, plan, CorralError } = corral;

async function rejection(p: unknown, argv: unknown = ['true']) {
  try {
    await run(p as never, argv as never);
  } catch (e) {
    return e as InstanceType<typeof CorralError>;
  }
  throw new Error('expected a rejection');
}

describe('policy validation', () => {
  it.each([
    [{ bogus: 1 }, 'bogus'],
    [{ fs: { reed: ['/usr'] } }, 'fs.reed'],
    [{ fs: { read: '/usr' } }, 'fs.read'],
    [{ fs: { read: ['/usr', 42] } }, 'fs.read[1]'],
    [{ fs: { read: ['./definitely-missing-dir'] } }, 'fs.read[0]'],
    [{ fs: { write: ['/nonexistent/path'] } }, 'fs.write[0]'],
    [{ fs: { write: ['/proc/self'] } }, 'fs.write[0]'],
    [{ fs: { read: ['~root/x'] } }, 'fs.read[0]'],
    [{ network: 'internet' }, 'network'],
    [{ network: 42 }, 'network'],
    [{ limits: { memory: 'lots' } }, 'limits.memory'],
    [{ limits: { memory: -1 } }, 'limits.memory'],
    [{ limits: { memory: 1e300 } }, 'limits.memory'],
    [{ limits: { memory: '999999999T' } }, 'limits.memory'],
    [{ limits: { pids: 1.5 } }, 'limits.pids'],
    [{ limits: { openFiles: 0 } }, 'limits.openFiles'],
    [{ limits: { cpus: 0 } }, 'limits.cpus'],
    [{ timeout: '5 weeks' }, 'timeout'],
    [{ timeout: '9999h' }, 'timeout'],
    [{ seccomp: 'loose' }, 'seccomp.profile'],
    [{ seccomp: { deny: ['not_a_syscall'] } }, 'seccomp.deny[0]'],
    [{ seccomp: { allow: ['rm -rf'] } }, 'seccomp.allow[0]'],
    [{ hostname: 'has space' }, 'hostname'],
    [{ hostname: 'x'.repeat(100) }, 'hostname'],
    [{ env: { 'A=B': 'x' } }, 'env.A=B'],
    [{ env: { A: 3 } }, 'env.A'],
    [{ inheritEnv: 'yes' }, 'inheritEnv'],
    [{ cwd: '/root-does-not-exist' }, 'cwd'],
    [{ strict: 'yes' }, 'strict'],
  ])('%j is rejected naming %s', async (policy, field) => {
    const e = await rejection(policy);
    expect(e).toBeInstanceOf(CorralError);
    expect(e.code).toBe('POLICY_INVALID');
    expect(e.field).toBe(field);
    expect(() => plan(policy as never)).toThrow(CorralError);
  });

  it.each([
    [{ timeout: Number.NaN }, 'timeout'],
    [{ limits: { memory: Number.POSITIVE_INFINITY, pids: Number.NaN } }, 'limits.memory'],
    [{ limits: { cpus: Number.NEGATIVE_INFINITY } }, 'limits.cpus'],
    [{ network: { bindPorts: [80, Number.NaN] } }, 'network.bindPorts[1]'],
    [{ env: { A: (() => 'x') as unknown as string } }, 'env.A'],
    [{ limits: { memory: BigInt(1) as unknown as number } }, 'limits.memory'],
  ])('a value JSON cannot carry, %s, is rejected naming %s', async (policy, field) => {
    // JSON.stringify would turn these into null (no limit at all) or drop them.
    const e = await rejection(policy);
    expect(e).toMatchObject({ code: 'POLICY_INVALID', field });
    expect(() => plan(policy as never)).toThrow(expect.objectContaining({ code: 'POLICY_INVALID', field }));
  });

  it('rejects a policy that refers to itself', async () => {
    const policy: Record<string, unknown> = { env: {} };
    (policy.env as Record<string, unknown>).self = policy;
    expect(await rejection(policy)).toMatchObject({ code: 'POLICY_INVALID', field: expect.stringMatching(/^env\.self/) });
  });

  it.each([
    [{ limits: { pids: 2 ** 32 } }, 'limits.pids'],
    [{ limits: { pids: 1 } }, 'limits.pids'],
    [{ limits: { openFiles: 3 } }, 'limits.openFiles'],
    [{ cwd: '/etc/passwd' }, 'cwd'],
  ])('refuses %j at plan time, naming %s', async (policy, field) => {
    // These once got as far as the sandbox's setup and failed there with SPAWN_FAILED.
    expect(() => plan(policy)).toThrow(expect.objectContaining({ code: 'POLICY_INVALID', field }));
    expect(await rejection(policy)).toMatchObject({ code: 'POLICY_INVALID', field });
  });

  it("refuses more open files than this host's hard limit", async () => {
    const limit = corral.check().openFilesLimit;
    expect(limit).toBeGreaterThan(16);
    expect(() => plan({ limits: { openFiles: limit! + 1 } })).toThrow(expect.objectContaining({ code: 'POLICY_INVALID', field: 'limits.openFiles' }));
    expect(plan({ limits: { openFiles: limit! } }).sandbox.rlimits.openFiles).toBe(limit);
  });

  it.each([
    [{ input: 42 }, 'input'],
    [{ input: { length: 3 } }, 'input'],
    [{ signal: {} }, 'signal'],
    [{ signal: 'abort' }, 'signal'],
  ])('refuses the options %j with a CorralError naming %s', async (options, field) => {
    const e = await run({}, ['true'], options as never).catch((x) => x);
    expect(e).toBeInstanceOf(CorralError);
    expect(e).toMatchObject({ code: 'POLICY_INVALID', field });
  });

  it.each([['a string'], [[1, 2]], [42]])('a non-object policy %j is rejected', async (policy) => {
    const e = await rejection(policy);
    expect(e.code).toBe('POLICY_INVALID');
    expect(e.field).toBe('policy');
  });

  it('treats a missing policy as the safe empty one', async () => {
    expect((await run(undefined as never, ['true'])).exitCode).toBe(0);
    expect((await run(null as never, ['true'])).exitCode).toBe(0);
  });

  it.each([
    [[], 'argv'],
    ['true', 'argv'],
    [['true', 3], 'argv[1]'],
    [[''], 'argv[0]'],
    [['tr\0ue'], 'argv[0]'],
  ])('a bad command %j is rejected naming %s', async (argv, field) => {
    const e = await rejection({}, argv);
    expect(e.code).toBe('POLICY_INVALID');
    expect(e.field).toBe(field);
  });

  it('accepts sizes and durations as numbers or strings', () => {
    const p = plan({ limits: { memory: '256M', fileSize: 1 << 20, cpuTime: '1500ms' }, timeout: 5000 });
    expect(p.sandbox.rlimits).toMatchObject({ fileSize: 1 << 20, cpuSeconds: 2 });
    // The tree-wide memory limit goes to a cgroup where there is one, else RLIMIT_AS.
    expect(p.sandbox.cgroup?.memory ?? p.sandbox.rlimits.addressSpace).toBe(256 << 20);
    expect(p.sandbox.timeoutMs).toBe(5000);
  });

  it('reports caveats and refuses them in strict mode', () => {
    const p = plan({ network: 'host' });
    expect(p.caveats.map((c) => c.code)).toEqual(['HOST_NETWORK']);
    expect(() => plan({ network: 'host', strict: true })).toThrow(/strict mode refuses/);
    try {
      plan({ network: 'host', strict: true });
    } catch (e) {
      expect((e as InstanceType<typeof CorralError>).code).toBe('UNSUPPORTED');
    }
    expect(plan({ strict: true }).caveats).toEqual([]);
  });

  it('plans the safe defaults for an empty policy', () => {
    const p = plan({});
    const s = p.sandbox;
    expect(s.hostname).toBe('corral');
    expect(s.network).toBe('isolated');
    expect(s.seccomp.profile).toBe('default');
    expect(Object.keys(s.env).sort()).toEqual(expect.arrayContaining(['HOME', 'LANG', 'PATH']));
    expect(s.mounts.find((m) => m.type === 'bind' && m.target === '/usr')).toMatchObject({ writable: false });
    expect(s.mounts.find((m) => m.type === 'tmpfs' && m.target === '/tmp')).toBeTruthy();
    expect(s.mounts.find((m) => m.type === 'mask' && m.target === '/etc/shadow')).toBeTruthy();
  });

  it('resolves relative and ~ paths against the caller', () => {
    const p = plan({ fs: { read: ['.'] } });
    expect(p.sandbox.mounts.some((m) => m.type === 'bind' && m.source === process.cwd())).toBe(true);
  });

  it('survives many bad calls without crashing the process', async () => {
    const bad: [unknown, string][] = [
      [{ fs: 1 }, 'fs'],
      [{ limits: [] }, 'limits'],
      [{ seccomp: { profile: 3 } }, 'seccomp.profile'],
      [{ network: { allow: 'x' } }, 'network.allow'],
      [{ fs: { volumes: 'x' } }, 'fs.volumes'],
    ];
    const fields: (string | undefined)[] = [];
    for (let i = 0; i < 200; i++) {
      const [policy] = bad[i % bad.length];
      const e = await rejection(policy);
      expect(e.code).toBe('POLICY_INVALID');
      fields.push(e.field);
    }
    expect(fields).toEqual(Array.from({ length: 200 }, (_, i) => bad[i % bad.length][1]));
    expect((await run({}, ['true'])).exitCode).toBe(0);
  });
});
