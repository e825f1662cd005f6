// R3: 1000 sequential and 50 concurrent runs from one Node process: every result correct,
// and nothing left behind — processes, descriptors, mounts, cgroups, temp directories.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { corral, helpersOf } from './helpers';

const { run } = corral;
const fds = () => readdirSync('/proc/self/fd').length;
/** Mounts in the host's namespace, but for those other test files make for their own trials
 *  (the escape suite mounts a file system inside a grant, under its /var/tmp directory). */
const mounts = () =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => !l.split(' ')[4]?.startsWith('/var/tmp/corral-escape-')).length;
/** This process's helper. (A sandbox's init is a clone of the helper, and may still be
 *  exiting when a run returns: it is not counted.) */
const hostProcessesOfHelper = () => helpersOf(process.pid);
/** Sandbox cgroups (s<id>) under this process's helper base, in every hierarchy. */
function sandboxCgroups(helper: string): string[] {
  const roots = ['/sys/fs/cgroup', ...readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c))];
  return roots.flatMap((r) => {
    const base = join(r, 'corral', `h${helper}`);
    return existsSync(base) ? readdirSync(base).filter((e) => /^s\d+$/.test(e)).map((e) => join(base, e)) : [];
  });
}
const children = (pid: string) => {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
  } catch {
    return [];
  }
};
const corralTemp = () => readdirSync(process.env.XDG_RUNTIME_DIR ?? tmpdir()).filter((n) => n.startsWith('corral')).length;

describe('many runs', () => {
  it('1000 sequential and 50 concurrent runs are all correct and leak nothing', async () => {
    const policy = { limits: { memory: '256M', pids: 64 }, timeout: '20s' };
    await run(policy, ['true']); // warm up: helper started, runtime threads created
    const [fd0, mount0, temp0] = [fds(), mounts(), corralTemp()];
    for (let i = 0; i < 1000; i++) {
      const r = await run(policy, ['sh', '-c', `echo ${i}`]);
      if (r.stdout !== `${i}\n` || r.exitCode !== 0) throw new Error(`run ${i}: ${JSON.stringify(r)}`);
    }
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => run(policy, ['sh', '-c', `echo c${i}; echo e${i} >&2`])));
    results.forEach((r, i) => {
      expect(r.stdout).toBe(`c${i}\n`);
      expect(r.stderr).toBe(`e${i}\n`);
      expect(r.exitCode).toBe(0);
    });
    const helpers = hostProcessesOfHelper();
    expect(helpers).toHaveLength(1);
    // A sandbox's init reports the end before it exits (so results are not held up by the
    // kernel's namespace teardown); the helper reaps it, and removes its cgroup, a moment
    // later. Leaks stay; those go within a second.
    for (let i = 0; i < 100 && (children(helpers[0]).length > 0 || sandboxCgroups(helpers[0]).length > 0); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(children(helpers[0])).toEqual([]);
    expect(fds()).toBe(fd0);
    expect(mounts()).toBe(mount0);
    expect(sandboxCgroups(helpers[0])).toEqual([]);
    expect(corralTemp()).toBe(temp0);
  }, 300_000);
});
