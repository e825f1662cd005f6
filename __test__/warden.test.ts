// The carve-out warden: the process that puts masks and pins back when the host replaces
// what they cover, so that the sandbox's pid 1 holds no capability. It lives outside the
// sandbox's pid namespace and must go with the sandbox, the helper and the caller.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { corral, hostDir, root } from './helpers';

const sh = (script: string) => ['/bin/sh', '-c', script];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The children of `pid` (every thread's). */
function children(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) =>
      readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}

const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
/** How many pid namespaces a process is in (its NSpid line). */
const pidDepth = (pid: number) => (readFileSync(`/proc/${pid}/status`, 'utf8').match(/^NSpid:\s+(.*)$/m)?.[1] ?? '').split(/\s+/).length;

let tree: ReturnType<typeof hostDir>;
let home = '';
beforeEach(() => {
  tree = hostDir('corral-warden-');
  home = join(tree.path, 'home');
  mkdirSync(join(home, '.aws'), { recursive: true });
  writeFileSync(join(home, '.aws', 'credentials'), 'old\n');
});
afterEach(() => tree.cleanup());

describe('the carve-out warden', () => {
  it('puts a carve-out back while pid 1 holds no capability at all', async () => {
    const marker = `SECRET-${process.pid}-${Date.now()}`;
    const p = corral.spawn({ fs: { read: [home], deny: [join(home, '.aws')] } }, sh(
      `grep -E '^(CapPrm|CapEff|CapBnd|CapInh|CapAmb|NoNewPrivs):' /proc/1/status; echo up; read go; cat ${home}/.aws/credentials; echo end`,
    ));
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    while (!out.includes('up\n')) await sleep(10);
    // The host swaps the denied directory for a new one holding the secret.
    mkdirSync(join(home, '.aws.new'));
    writeFileSync(join(home, '.aws.new', 'credentials'), marker);
    renameSync(join(home, '.aws'), join(home, '.aws.old'));
    renameSync(join(home, '.aws.new'), join(home, '.aws'));
    await sleep(300);
    p.stdin!.end('go\n');
    const r = await p.wait();
    expect(r.exitCode).toBe(0);
    for (const set of ['CapPrm', 'CapEff', 'CapBnd', 'CapInh', 'CapAmb']) expect(out).toMatch(new RegExp(`^${set}:\\s+0+$`, 'm'));
    expect(out).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(out).toMatch(/end\n$/);
    expect(out).not.toContain(marker);
  });

  it('is not started for a sandbox with nothing to watch, and is gone with the sandbox', async () => {
    // The helper's children while a sandbox runs: its init, and a warden only with carve-outs.
    const script = (policy: object) => `
      const c = require(${JSON.stringify(root)});
      const p = c.spawn(${JSON.stringify(policy)}, ['sh', '-c', 'echo up; read x']);
      p.stdout.once('data', () => process.stdout.write('up\\n'));
      process.stdin.once('data', () => { p.stdin.end('x\\n'); p.wait().then(() => process.stdout.write('done\\n')); });
      setInterval(() => {}, 1000);`;
    for (const [policy, wardens] of [[{}, -1], [{ fs: { read: [home], deny: [join(home, '.aws')] } }, 1]] as const) {
      const child = spawn(process.execPath, ['-e', script(policy)], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      try {
        while (!out.includes('up\n')) await sleep(10);
        const helper = children(child.pid!).find((c) => comm(c) === 'corral-helper')!;
        const kids = children(helper);
        const outside = kids.filter((k) => pidDepth(k) === 1);
        if (wardens === 1) expect(outside).toHaveLength(1);
        else expect(outside).toEqual([]);
        child.stdin!.write('go\n');
        while (!out.includes('done\n')) await sleep(10);
        for (let i = 0; i < 200 && children(helper).length > 0; i++) await sleep(25);
        expect(children(helper)).toEqual([]);
      } finally {
        child.kill('SIGKILL');
      }
    }
  });

  for (const victim of ['caller', 'helper'] as const) {
    it(`leaves nothing behind when the ${victim} is killed with SIGKILL`, async () => {
      const script = `
        const c = require(${JSON.stringify(root)});
        c.spawn(${JSON.stringify({ fs: { read: [home], deny: [join(home, '.aws')] } })}, ['sh', '-c', 'echo up; sleep 600']).stdout.once('data', () => process.stdout.write('up\\n'));
        setInterval(() => {}, 1000);`;
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      let pids: number[] = [];
      try {
        while (!out.includes('up\n')) await sleep(10);
        const helper = children(child.pid!).find((c) => comm(c) === 'corral-helper')!;
        // Init and the warden (a child outside the sandbox's pid namespace).
        for (let i = 0; i < 200 && children(helper).length < 2; i++) await sleep(10);
        pids = [helper, ...children(helper)];
        expect(pids.filter((p) => pidDepth(p) === 1)).toHaveLength(2); // the helper and the warden
        process.kill(victim === 'caller' ? child.pid! : helper, 'SIGKILL');
      } finally {
        if (victim === 'helper') setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }
      for (let i = 0; i < 200 && pids.some(alive); i++) await sleep(25);
      expect(pids.filter(alive)).toEqual([]);
      child.kill('SIGKILL');
    });
  }
});
