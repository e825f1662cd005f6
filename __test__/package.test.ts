// The package around the code: examples that run, licenses in every tarball, the error and
// caveat code list, the API reference, and the checks npm's tools make.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { corral, root, runCli } from './helpers';

const examples = join(root, 'examples');
const example = (name: string) => {
  const r = spawnSync(process.execPath, [join(examples, name)], { encoding: 'utf8', cwd: root, env: { ...process.env, CORRAL_EXAMPLE_DIR: '/var/tmp' }, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

describe('examples/', () => {
  it('lists every example in its README', () => {
    const readme = readFileSync(join(examples, 'README.md'), 'utf8');
    for (const f of readdirSync(examples).filter((f) => f !== 'README.md')) expect(readme).toContain(`(${f})`);
  });

  it.each([
    ['quick-start.mjs', /^exit 0, hostname corral, wrote hello\nrefused: POLICY_INVALID limits\.memory\n$/],
    ['ci-job.mjs', /^tests passed\nbytes of ~\/\.ssh visible: 0\n$/],
    ['untrusted-code.mjs', /^exit 0; \/etc\/shadow showed 0 bytes; home entries 0; network: none; limits: \d+ bytes\n$/],
    ['agent.mjs', /^edited; hook refused ; hook on the host: false\n$/],
    ['pool-burst.mjs', /^sum 20540; created \d+, hits \d+, waits \d+, misses \d+, queued \d+\n$/],
    ['stream-and-cancel.mjs', /^streamed: line 1\n(streamed: )?line 2\n(streamed: )?line 3\nexit 0\naborted: TimeoutError\n$/],
  ])('%s runs', (name, expected) => {
    const r = example(name);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(expected);
    expect(r.status).toBe(0);
  }, 130_000);

  it('every example file is one of those run above, or the policy file', () => {
    expect(readdirSync(examples).sort()).toEqual(['README.md', 'agent.mjs', 'ci-job.mjs', 'policy.json', 'pool-burst.mjs', 'quick-start.mjs', 'stream-and-cancel.mjs', 'untrusted-code.mjs']);
  });

  it('policy.json runs through the CLI', () => {
    expect(runCli(['run', '--policy', join(examples, 'policy.json'), '--', 'sh', '-c', 'hostname'])).toMatchObject({ stdout: 'example\n', status: 0 });
  });
});

describe('the package', () => {
  const pack = (dir: string) => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' });
    return (JSON.parse(r.stdout)[0].files as { path: string }[]).map((f) => f.path);
  };

  it('ships licenses, changelog, schema, README and the Python helper in the main tarball', () => {
    const files = pack(root);
    for (const f of ['LICENSE-MIT', 'LICENSE-APACHE', 'CHANGELOG.md', 'README.md', 'schema/policy.schema.json', 'schema/caveats.json', 'python/corral_fork.py', 'dist/index.d.mts', 'binding.d.cts']) expect(files).toContain(f);
  });

  it('ships the same licenses in every platform package, and says plainly that macOS does not run sandboxes', () => {
    const mit = readFileSync(join(root, 'LICENSE-MIT'), 'utf8');
    const apache = readFileSync(join(root, 'LICENSE-APACHE'), 'utf8');
    for (const p of readdirSync(join(root, 'npm'))) {
      const dir = join(root, 'npm', p);
      expect(readFileSync(join(dir, 'LICENSE-MIT'), 'utf8')).toBe(mit);
      expect(readFileSync(join(dir, 'LICENSE-APACHE'), 'utf8')).toBe(apache);
      expect(pack(dir)).toEqual(expect.arrayContaining(['LICENSE-MIT', 'LICENSE-APACHE', 'README.md']));
      if (p.startsWith('darwin')) {
        expect(readFileSync(join(dir, 'README.md'), 'utf8')).toMatch(/does not run sandboxes on macOS yet/);
        expect(JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).description).toMatch(/UNSUPPORTED/);
      }
    }
  });

  it('passes publint and arethetypeswrong', () => {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'check-package.mjs')], { encoding: 'utf8', timeout: 170_000 });
    expect(r.stdout, r.stderr).toMatch(/check-package: ok/);
    expect(r.status).toBe(0);
  }, 180_000);

  it('builds its API reference from the TSDoc without a warning', () => {
    const r = spawnSync(join(root, 'node_modules', '.bin', 'typedoc'), ['--emit', 'none'], { cwd: root, encoding: 'utf8', timeout: 170_000 });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 180_000);
});

describe('error and caveat codes', () => {
  const caveats = JSON.parse(readFileSync(join(root, 'schema', 'caveats.json'), 'utf8')) as { code: string; meaning: string; fix: string }[];
  const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');

  it('types exactly the caveat codes the native core reports', () => {
    expect([...corral.CAVEAT_CODES]).toEqual(caveats.map((c) => c.code));
  });

  it('documents every error and caveat code with what to do', () => {
    for (const c of caveats) expect(doc).toContain(`| \`${c.code}\` |`);
    for (const code of ['POLICY_INVALID', 'SPAWN_FAILED', 'UNSUPPORTED', 'INVALID_STATE', 'ABORTED', 'COMMAND_FAILED', 'QUEUE_FULL', 'INTERNAL']) expect(doc).toContain(`| \`${code}\` |`);
    expect(caveats.every((c) => c.meaning && c.fix)).toBe(true);
  });

  it('documents the environment variables corral reads', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    for (const v of ['CORRAL_HELPER', 'CORRAL_CGROUP', 'CORRAL_DEBUG', 'CORRAL_REQUIRE_ALL']) expect(readme).toContain(`\`${v}\``);
  });
});
