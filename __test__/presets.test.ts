// Presets run real jobs: a CI build, untrusted code, an AI agent in a repository, and the
// strict preset. Home directories, registries and repositories here are ones the test
// makes; the "registry" is a loopback server named by npm's own setting.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corral, hostDir, runCli } from './helpers';

const { run, presets, mergePolicies } = corral;
const sh = (s: string) => ['/bin/sh', '-c', s];

let home: ReturnType<typeof hostDir>;
let work: ReturnType<typeof hostDir>;
let server: Server;
let registry = '';
const saved = { HOME: process.env.HOME, npm_config_registry: process.env.npm_config_registry };

beforeAll(async () => {
  home = hostDir('corral-home-');
  work = hostDir('corral-work-');
  mkdirSync(join(home.path, '.ssh'));
  writeFileSync(join(home.path, '.ssh', 'id_test'), 'PRIVATE KEY');
  writeFileSync(join(home.path, '.npmrc'), '//registry.test/:_authToken=SECRET\n');
  writeFileSync(join(home.path, 'notes.txt'), 'notes');
  mkdirSync(join(home.path, '.npm'));
  server = createServer((req, res) => res.end(`registry here: ${req.url}\n`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  registry = `http://registry.test:${(server.address() as { port: number }).port}/`;
  // The presets read the home directory and npm's registry from the environment.
  process.env.HOME = home.path;
  process.env.npm_config_registry = registry;
});

afterAll(() => {
  process.env.HOME = saved.HOME;
  if (saved.npm_config_registry === undefined) delete process.env.npm_config_registry;
  else process.env.npm_config_registry = saved.npm_config_registry;
  server.close();
  home.cleanup();
  work.cleanup();
});

describe('presets', () => {
  it('ci: builds and runs in the workspace, writes caches, reaches only the configured registry, never sees secrets', async () => {
    const policy = presets.ci({ dir: work.path });
    expect((policy.network as { allow: string[] }).allow).toContain(registry.replace(/^http:\/\/|\/$/g, ''));
    // registry.test is a name this test owns: pin it to the loopback server.
    const pinned = mergePolicies(policy, { network: { hosts: { 'registry.test': '127.0.0.1' } } });
    const r = await run(pinned, sh(
      [
        'printf "#!/bin/sh\\necho built\\n" > build.sh && chmod +x build.sh && ./build.sh',
        'echo cached > ~/.npm/entry && cat ~/.npm/entry',
        'cat ~/notes.txt; echo',
        'cat ~/.ssh/id_test 2>/dev/null | wc -c',
        'cat ~/.npmrc 2>/dev/null | wc -c',
        'echo x > ~/outside 2>/dev/null || echo home-read-only',
        'curl -s --max-time 5 "$npm_config_registry"pkg',
        'curl -s -o /dev/null -w "%{http_code}\\n" --max-time 5 http://elsewhere.test/ || true',
      ].join('; '),
    ));
    expect(r.stdout.split('\n')).toEqual(['built', 'cached', 'notes', '0', '0', 'home-read-only', 'registry here: /pkg', '403', '']);
    expect(existsSync(join(work.path, 'build.sh'))).toBe(true);
    expect(r.violations.map((v) => v.destination)).toEqual(['elsewhere.test']);
  });

  it('untrusted: its own directory and nothing else, no network, tight limits', async () => {
    writeFileSync(join(work.path, 'prog.sh'), '#!/bin/sh\necho ran > result; ls ~ 2>&1 | head -1; cat /var/tmp/* 2>&1 | head -1\n');
    chmodSync(join(work.path, 'prog.sh'), 0o755);
    const policy = presets.untrusted({ dir: work.path });
    const r = await run(policy, sh(`./prog.sh; cat ${home.path}/notes.txt 2>/dev/null || echo no-home; (exec 3<>/dev/tcp/127.0.0.1/${(server.address() as { port: number }).port}) 2>/dev/null || echo no-net`));
    expect(readFileSync(join(work.path, 'result'), 'utf8')).toBe('ran\n');
    expect(r.stdout).toMatch(/no-home\nno-net\n$/);
    expect(r.limits.timeoutMs).toBe(600_000);
    expect(r.exitCode).toBe(0);
  });

  it('agent: writes the repository, never its hooks, git config or editor tasks, nor secrets', async () => {
    const repo = join(work.path, 'repo');
    mkdirSync(join(repo, '.git', 'hooks'), { recursive: true });
    writeFileSync(join(repo, '.git', 'config'), '[core]\n');
    mkdirSync(join(repo, 'src'));
    const r = await run(presets.agent({ dir: join(repo, 'src') }), sh(
      [
        'echo code > main.c && echo wrote',
        'echo evil > ../.git/hooks/pre-commit 2>/dev/null || echo hook-refused',
        'echo evil >> ../.git/config 2>/dev/null || echo config-refused',
        'mkdir -p ../.vscode 2>/dev/null && echo "{}" > ../.vscode/tasks.json 2>/dev/null || echo vscode-refused',
        'cat ~/notes.txt; echo',
        'cat ~/.ssh/id_test 2>/dev/null | wc -c',
      ].join('; '),
    ));
    expect(r.stdout.split('\n')).toEqual(['wrote', 'hook-refused', 'config-refused', 'vscode-refused', 'notes', '0', '']);
    expect(readFileSync(join(repo, 'src', 'main.c'), 'utf8')).toBe('code\n');
    expect(existsSync(join(repo, '.git', 'hooks', 'pre-commit'))).toBe(false);
    expect(readFileSync(join(repo, '.git', 'config'), 'utf8')).toBe('[core]\n');
    expect(existsSync(join(repo, '.vscode'))).toBe(false);
  });

  it('strict: runs where every rule holds, and refuses otherwise', async () => {
    const caveats = corral.plan({ ...presets.strict(), strict: false }).caveats;
    if (caveats.length) {
      await expect(run(presets.strict(), ['true'])).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    } else {
      const r = await run(presets.strict(), sh('echo ok; ls / | wc -l'));
      expect(r.stdout.split('\n')[0]).toBe('ok');
      expect(r.caveats).toEqual([]);
    }
  });

  it('refuses a name that is not a preset', () => {
    expect(() => corral.preset('lax')).toThrow(expect.objectContaining({ code: 'POLICY_INVALID', field: 'preset' }));
    expect(runCli(['run', '--preset', 'lax', '--', 'true'])).toMatchObject({ status: 125 });
  });

  it('corral presets lists each with what it grants; --preset applies one', () => {
    const r = runCli(['presets']);
    for (const name of ['ci', 'untrusted', 'agent', 'strict']) expect(r.stdout).toMatch(new RegExp(`^${name}\\n  \\S`, 'm'));
    expect(r.stdout).toMatch(/^ +fs\.deny +~\/\.ssh\/ /m);
    const json = JSON.parse(runCli(['presets', '--json']).stdout);
    expect(Object.keys(json)).toEqual(['ci', 'untrusted', 'agent', 'strict']);
    const plan = JSON.parse(runCli(['plan', '--json', '--preset', 'strict', '--timeout', '1']).stdout);
    expect(plan.strict).toBe(true);
    expect(plan.sandbox.seccomp.profile).toBe('strict');
    expect(plan.sandbox.timeoutMs).toBe(1000);
  });
});
