// What a client and helper killed outright (SIGKILL, the OOM killer) leave on the host must
// not outlive the next helper's start: placeholders (only marked, empty ones nobody stands
// on, reached without symlinks), cgroups, temporary directories and mounts. As the test
// user and, when that is root, as uid 65534 too.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasCommand, helperProcesses, helpersOf, hostDir, isRoot, root } from './helpers';

const NOBODY = 65534;
const dir = hostDir('corral-leftovers-');
afterAll(() => dir.cleanup());
const identities: ('root' | 'uid65534' | 'user')[] = isRoot && hasCommand('setpriv') ? ['root', 'uid65534'] : ['user'];
const index = JSON.stringify(join(root, 'dist', 'index.js'));
const uidOf = (identity: string) => (identity === 'uid65534' ? NOBODY : process.getuid!());
/**
 * The runtime directory the runs here get, one per user: the user's alone, so helpers list
 * their placeholders in it, apart from every other helper on the machine (which would
 * otherwise sweep this test's dead helpers' lists before the test looks).
 */
function runtimeDir(uid: number): string {
  const d = join(dir.path, `run-${uid}`);
  mkdirSync(d, { recursive: true, mode: 0o700 });
  chownSync(d, uid, uid);
  return d;
}
/** Where helpers of `uid` list their placeholders. */
const registry = (uid: number) => join(runtimeDir(uid), 'corral-placeholders');

const until = async (what: () => boolean) => {
  for (let i = 0; i < 500 && !what(); i++) await new Promise((r) => setTimeout(r, 20));
  return what();
};

/**
 * The sandbox inits of the client `parent`'s helper: its children in another pid namespace
 * (the helper's other children — the set-id guard's responder, a short-lived child of the
 * identity probe — are not sandboxes, and the probe's comes and goes).
 */
function sandboxInits(parent: number): string[] {
  const ns = (p: string) => {
    try {
      return readlinkSync(`/proc/${p}/ns/pid`);
    } catch {
      return '';
    }
  };
  const [helper, ...children] = helperProcesses(parent);
  return helper ? children.filter((c) => ns(c) !== '' && ns(c) !== ns(helper)) : [];
}

/** A Node process running `code` as `identity`, with its own runtime directory. */
function node(identity: string, code: string) {
  const env = { PATH: process.env.PATH, HOME: dir.path, XDG_RUNTIME_DIR: runtimeDir(uidOf(identity)) };
  if (identity !== 'uid65534') return { cmd: process.execPath, args: ['-e', code], env };
  return { cmd: 'setpriv', args: ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', process.execPath, '-e', code], env };
}

/**
 * Starts a client that runs `policy` with `sleep 60` (or, `warm`, keeps a pool's sandbox
 * prepared); resolves once `ready()` holds.
 */
async function holding(identity: string, policy: object, ready: () => boolean, warm = false) {
  const code = warm
    ? `const p = new (require(${index}).Pool)(${JSON.stringify(policy)}, { size: 1 }); setInterval(() => p.stats(), 1000)`
    : `require(${index}).run(${JSON.stringify(policy)}, ['/bin/sh', '-c', 'sleep 60']).catch(() => {})`;
  const h = node(identity, code);
  const child = spawn(h.cmd, h.args, { env: h.env, stdio: 'ignore' });
  // setpriv execs node, so the child's pid is the client's.
  expect(await until(() => ready() && sandboxInits(child.pid!).length > 0)).toBe(true);
  const helpers = helpersOf(child.pid!).map(Number);
  return {
    helpers,
    /** SIGKILL to the helper and the client at once: nobody gets to clean up. */
    async killOutright() {
      // helpersOf finds the sandboxes' inits too (clones of the helper, same environment),
      // which may die with the helper before they are killed here.
      for (const pid of helpers) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
        }
      }
      child.kill('SIGKILL');
      await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
      expect(await until(() => helpers.every((pid) => !existsSync(`/proc/${pid}`)))).toBe(true);
    },
  };
}

/** A run as `identity` in a new client (a new helper, which sweeps as it starts). */
function nextStart(identity: string) {
  const next = node(identity, `require(${index}).run({}, ['true']).then((r) => process.exit(r.exitCode))`);
  const r = spawnSync(next.cmd, next.args, { env: next.env, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

/** The directory `name` inside this test's host directory, owned by `identity`. */
function owned(identity: string, ...names: string[]) {
  let p = join(dir.path, identity);
  for (const n of ['', ...names]) {
    p = n ? join(p, n) : p;
    mkdirSync(p, { recursive: true });
    if (identity === 'uid65534') chownSync(p, NOBODY, NOBODY);
  }
  return p;
}

describe.each(identities)('as %s', (identity) => {
  it('the next helper removes the placeholders of a helper killed outright, not those a live one stands on', async () => {
    const repo = owned(identity, 'killed', 'repo', '.git');
    const repoRoot = join(repo, '..');
    const paths = [`${repoRoot}/.git/hooks`, `${repoRoot}/.envrc`];
    const there = () => paths.map((p) => existsSync(p));
    const policy = { fs: { write: [repoRoot], protect: paths } };
    const killed = await holding(identity, policy, () => there().every(Boolean));
    // A second client's sandbox stands on the same placeholders, and lives on.
    const live = await holding(identity, policy, () => true);
    await killed.killOutright();
    nextStart(identity);
    expect(there(), 'a live sandbox still stands on them').toEqual([true, true]);
    await live.killOutright();
    // Left behind: nobody removed them. The next helper sweeps them away as it starts.
    expect(there()).toEqual([true, true]);
    nextStart(identity);
    expect(there()).toEqual([false, false]);
    // The dead helpers' lists go too (lists are named after their helper's pid).
    const lists = () => {
      try {
        return readdirSync(registry(uidOf(identity))).filter((n) => [...killed.helpers, ...live.helpers].some((h) => n.startsWith(`${h}.`)));
      } catch {
        return [];
      }
    };
    expect(lists()).toEqual([]);
  }, 60_000);

  it("a warm pool's prepared sandbox: its placeholders go at the next start too", async () => {
    const repo = owned(identity, 'pool', 'repo');
    const hooks = join(repo, '.git-hooks');
    const k = await holding(identity, { fs: { write: [repo], protect: [hooks] } }, () => existsSync(hooks), true);
    await k.killOutright();
    expect(existsSync(hooks)).toBe(true);
    nextStart(identity);
    expect(existsSync(hooks)).toBe(false);
  }, 60_000);

  it('after SIGKILL of client and helper in every write mode with limits, the next start leaves no cgroup, temp dir or mount', async () => {
    const tmpBefore = new Set(readdirSync('/tmp').filter((n) => n.startsWith('corral-')));
    // (Not the escape suite's own trial mounts, under its /var/tmp directory.)
    const mounts = () =>
      readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => (l.includes(dir.path) || l.includes('corral')) && !l.includes('/var/tmp/corral-escape-')).length;
    const mountsBefore = mounts();
    for (const writeMode of ['direct', 'overlay', 'ephemeral']) {
      const work = owned(identity, `modes-${writeMode}`);
      const policy = { fs: { write: [work], writeMode, protect: [join(work, '.envrc')] }, limits: { memory: '64M', pids: 64 } };
      // The placeholder (made in every write mode) shows the sandbox is up.
      const k = await holding(identity, policy, () => existsSync(join(work, '.envrc')));
      const cgroups = () => k.helpers.flatMap((h) => baseCgroups(h));
      await k.killOutright();
      nextStart(identity);
      expect(cgroups(), `${writeMode}: the dead helper's cgroups`).toEqual([]);
      expect(existsSync(join(work, '.envrc')), `${writeMode}: its placeholder`).toBe(false);
    }
    const tmpAfter = readdirSync('/tmp').filter((n) => n.startsWith('corral-') && !tmpBefore.has(n));
    // Another test's helper may hold the registry for a moment.
    expect(tmpAfter.filter((n) => !n.startsWith('corral-placeholders-'))).toEqual([]);
    expect(mounts()).toBe(mountsBefore);
  }, 60_000);
});

/** A helper's base cgroup directories that exist, in any hierarchy, wherever it put them. */
function baseCgroups(helper: number): string[] {
  const found: string[] = [];
  const walk = (d: string, depth: number) => {
    if (depth > 6) return;
    let entries: string[] = [];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      try {
        if (!lstatSync(p).isDirectory()) continue;
      } catch {
        continue;
      }
      if (e === `h${helper}` || e === `corral-h${helper}`) found.push(p);
      else walk(p, depth + 1);
    }
  };
  walk('/sys/fs/cgroup', 0);
  return found;
}

/** Marks `p` as corral marks its placeholders (python3: Node has no xattr call). */
const mark = (p: string) =>
  spawnSync('python3', ['-c', 'import os, sys; os.setxattr(sys.argv[1], "user.corral.placeholder", b"1", follow_symlinks=False)', p]).status === 0;

describe.runIf(isRoot)('a list that leads elsewhere', () => {
  it('removes only an empty, marked placeholder reached without symlinks, and never fails the run', async () => {
    const base = owned('root', 'lists');
    const made: Record<string, string> = {};
    const file = (name: string, content: string, marked: boolean) => {
      made[name] = join(base, name);
      writeFileSync(made[name]!, content);
      if (marked) expect(mark(made[name]!)).toBe(true);
    };
    file('placeholder', '', true);
    file('written', 'the host wrote this after the helper died\n', true);
    file('unmarked', '', false);
    file('target', '', true);
    symlinkSync(join(base, 'target'), join(base, 'link'));
    mkdirSync(join(base, 'real'));
    file('real/inner', '', true);
    symlinkSync(join(base, 'real'), join(base, 'via'));
    mkdirSync(join(base, 'full'));
    expect(mark(join(base, 'full'))).toBe(true);
    writeFileSync(join(base, 'full', 'kept'), 'x');
    const entry = (root: string, name: string, kind: 'f' | 'd', id = '') => `${root}\0${name}\0${kind}\0${id}\0`;
    const list = [
      entry(base, 'placeholder', 'f'),
      entry(base, 'written', 'f'),
      entry(base, 'unmarked', 'f'),
      entry(base, 'unmarked', 'f', '1 2 3 4'), // an identity that is not this file's
      entry(base, 'link', 'f'),
      entry(join(base, 'via'), 'inner', 'f'),
      entry(base, 'full', 'd'),
      entry(base, '../lists/placeholder', 'f'),
      entry('relative/root', 'x', 'f'),
      'garbage\0\0\0',
    ].join('');
    const reg = registry(0);
    const planted = ['planted.1', 'planted.2', 'planted.3'].map((n) => join(reg, n));
    const unplant = () => planted.forEach((p) => rmSync(p, { recursive: true, force: true }));
    unplant();
    mkdirSync(reg, { recursive: true, mode: 0o700 });
    try {
      writeFileSync(planted[0]!, list, { mode: 0o600 });
      // Not a list: a symlink to a list elsewhere, and a directory.
      writeFileSync(join(base, 'elsewhere'), entry(base, 'target', 'f'));
      symlinkSync(join(base, 'elsewhere'), planted[1]!);
      mkdirSync(planted[2]!);
      nextStart('root');
      expect(existsSync(made['placeholder']!)).toBe(false);
      expect(readFileSync(made['written']!, 'utf8')).toMatch(/host wrote/);
      for (const kept of ['unmarked', 'target', 'real/inner']) expect(existsSync(made[kept]!), kept).toBe(true);
      expect(existsSync(join(base, 'full', 'kept'))).toBe(true);
      expect(existsSync(planted[0]!)).toBe(false);
      // What is not a list stays where it is, and the run did not fail over it.
      expect(lstatSync(planted[1]!).isSymbolicLink()).toBe(true);
    } finally {
      unplant();
    }
  }, 60_000);

  it('lists of a megabyte each do not stop the next start', async () => {
    // What a sandbox with a write grant over /tmp can leave: the next helper sweeps part of
    // it (bounded) and answers; the rest waits for later starts.
    const reg = registry(0);
    mkdirSync(reg, { recursive: true, mode: 0o700 });
    const big = Array.from({ length: 8 }, (_, i) => join(reg, `planted-big.${i}`));
    let text = '';
    for (let i = 0; text.length < (1 << 20) - 64; i++) text += `${dir.path}/none\0n${i}\0f\0\0`;
    try {
      for (const p of big) writeFileSync(p, text, { mode: 0o600 });
      nextStart('root');
      nextStart('root');
    } finally {
      for (const p of big) rmSync(p, { force: true });
    }
  }, 60_000);

  it('directories in the registry do not keep the sweep from the lists', async () => {
    const base = owned('root', 'behind-junk');
    writeFileSync(join(base, 'placeholder'), '');
    expect(mark(join(base, 'placeholder'))).toBe(true);
    const reg = registry(0);
    mkdirSync(reg, { recursive: true, mode: 0o700 });
    // Twice what a sweep looks at (4096), none of them a list, and never removed.
    const many = Array.from({ length: 8192 }, (_, i) => join(reg, `junk-${i}`));
    try {
      for (const d of many) mkdirSync(d);
      writeFileSync(join(reg, 'zz-dead.1'), `${base}\0placeholder\0f\0\0`, { mode: 0o600 });
      nextStart('root');
      expect(existsSync(join(base, 'placeholder'))).toBe(false);
    } finally {
      for (const d of many) rmSync(d, { recursive: true, force: true });
      rmSync(join(reg, 'zz-dead.1'), { force: true });
    }
  }, 60_000);

  it('a registry someone else made is not used, and runs go on', async () => {
    if (!hasCommand('setpriv')) return console.log('skipped: setpriv is missing');
    const reg = registry(NOBODY);
    rmSync(reg, { recursive: true, force: true });
    const base = owned('uid65534', 'squatted');
    writeFileSync(join(base, 'victim'), '');
    chownSync(join(base, 'victim'), NOBODY, NOBODY);
    // Made by root for uid 65534: not that user's, so not trusted.
    mkdirSync(reg, { mode: 0o777 });
    writeFileSync(join(reg, 'planted.1'), `${base}\0victim\0f\0\0`);
    try {
      expect(mark(join(base, 'victim'))).toBe(true);
      nextStart('uid65534');
      // A protect of a path that does not exist yet still runs (it just has no list).
      const r = spawnSync('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', process.execPath, '-e',
        `require(${index}).run({ fs: { write: [${JSON.stringify(base)}], protect: [${JSON.stringify(join(base, '.envrc'))}] } }, ['true']).then((r) => process.exit(r.exitCode))`],
        { env: { PATH: process.env.PATH, HOME: dir.path, XDG_RUNTIME_DIR: runtimeDir(NOBODY) }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(existsSync(join(base, 'victim'))).toBe(true);
      expect(existsSync(join(reg, 'planted.1'))).toBe(true);
    } finally {
      rmSync(reg, { recursive: true, force: true });
    }
  }, 60_000);
});

// A sandbox that may write where the registry lives (a write grant on the runtime directory,
// or on /tmp for a caller without one) can write lists there as the caller. A list is only a claim: the next helper
// must remove nothing the sandbox could not remove itself, however well the list names it
// (device, inode and birth time are there for anyone who can stat the file to read).
describe.each(identities)('as %s, a list written by a sandbox', (identity) => {
  it('does not make the next helper remove an empty file or directory the sandbox could only read', async () => {
    const base = owned(identity, 'forged');
    const victims = { dir: join(base, 'empty-dir'), file: join(base, 'empty-file') };
    mkdirSync(victims.dir);
    writeFileSync(victims.file, '');
    if (identity === 'uid65534') for (const v of Object.values(victims)) chownSync(v, NOBODY, NOBODY);
    const reg = registry(uidOf(identity));
    // The list names each victim with the identity its stat shows, as a helper that made
    // it would (kind: d or f).
    const script = [
      `R=${reg}; mkdir -p -m 700 "$R" || exit 3`,
      `for v in ${victims.dir}:d ${victims.file}:f; do p=\${v%:*}; k=\${v##*:}`,
      `  t=$(stat -c %.9W "$p"); set -- $(stat -c '%d %i' "$p") \${t%.*} \${t#*.}`,
      `  printf '%s\\0%s\\0%s\\0%s %s %s %s\\0' "$(dirname "$p")" "$(basename "$p")" "$k" "$1" "$2" "$3" "$(expr "$4" + 0)" >> "$R/forged.$$" || exit 4`,
      'done',
    ].join('\n');
    // The runtime directory here; /tmp where the caller has none.
    const policy = { fs: { read: [base], write: [runtimeDir(uidOf(identity))] } };
    const h = node(identity, `require(${index}).run(${JSON.stringify(policy)}, ['/bin/sh', '-c', ${JSON.stringify(script)}]).then((r) => process.exit(r.exitCode))`);
    const r = spawnSync(h.cmd, h.args, { env: h.env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const forged = readdirSync(reg).filter((n) => n.startsWith('forged.'));
    expect(forged.length, 'the sandbox wrote its list').toBeGreaterThan(0);
    try {
      nextStart(identity);
      expect(existsSync(victims.dir), 'the empty directory').toBe(true);
      expect(existsSync(victims.file), 'the empty file').toBe(true);
    } finally {
      for (const n of forged) rmSync(join(reg, n), { force: true });
    }
  }, 60_000);
});

// Root and a non-root caller may carve out the same path in a directory both can write:
// a placeholder root left behind is stood on by the other caller's sandbox, and a third
// user locks it every way flock(1) can. No run of either caller is refused, and root's
// sweep removes it only once nobody's sandbox stands on it any more.
describe.runIf(isRoot && hasCommand('setpriv') && hasCommand('flock'))('a placeholder root left, shared with another caller', () => {
  it("is not removed from under the other caller's sandbox, and a third user's locks refuse no run", async () => {
    const shared = join(dir.path, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    const paths = [join(shared, '.envrc'), join(shared, 'hooks')];
    const there = () => paths.map((p) => existsSync(p));
    const policy = { fs: { write: [shared], protect: paths } };
    const killed = await holding('root', policy, () => there().every(Boolean));
    await killed.killOutright();
    const live = await holding('uid65534', policy, () => true);
    const lockers: ReturnType<typeof spawn>[] = [];
    try {
      for (const p of paths) {
        for (const kind of ['-x', '-s']) {
          const args = ['--reuid=65533', '--regid=65533', '--clear-groups', '--', 'flock', kind, p, 'sleep', '60'];
          lockers.push(spawn('setpriv', args, { stdio: 'ignore', detached: true }));
          // Until the lock is there: the other kind is refused.
          await until(() => spawnSync('flock', ['-n', kind === '-x' ? '-s' : '-x', p, 'true']).status !== 0);
          for (const identity of ['root', 'uid65534']) {
            const h = node(identity, `require(${index}).run(${JSON.stringify(policy)}, ['true']).then((r) => process.exit(r.exitCode))`);
            const r = spawnSync(h.cmd, h.args, { env: h.env, encoding: 'utf8' });
            expect(r.status, `${identity} beside a ${kind} lock on ${p}: ${r.stderr}`).toBe(0);
          }
          process.kill(-lockers.at(-1)!.pid!, 'SIGKILL');
        }
      }
      // Root's sweep looks at its dead helper's list at every start: not while the other
      // caller's sandbox stands on them.
      nextStart('root');
      expect(there(), 'removed from under a live sandbox').toEqual([true, true]);
      await live.killOutright();
      nextStart('root');
      expect(there(), 'left behind once nobody stood on them').toEqual([false, false]);
    } finally {
      for (const l of lockers) {
        try {
          process.kill(-l.pid!, 'SIGKILL');
        } catch {}
      }
    }
  }, 90_000);

  it("that root's run leaves while the other caller's sandbox stands on it goes at root's next start", async () => {
    const shared = join(dir.path, 'shared-live');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    const paths = [join(shared, '.envrc'), join(shared, 'hooks')];
    const there = () => paths.map((p) => existsSync(p));
    const policy = { fs: { write: [shared], protect: paths } };
    // Root's run makes them and ends (not killed) once the other caller's sandbox stands on them.
    const go = join(shared, 'go');
    const wait = `while [ ! -e ${go} ]; do sleep 0.05; done`;
    const a = node('root', `require(${index}).run(${JSON.stringify(policy)}, ['/bin/sh', '-c', ${JSON.stringify(wait)}]).then((r) => process.exit(r.exitCode))`);
    const first = spawn(a.cmd, a.args, { env: a.env, stdio: 'ignore' });
    const ended = new Promise((r) => first.once('exit', r));
    expect(await until(() => there().every(Boolean) && sandboxInits(first.pid!).length > 0)).toBe(true);
    const rootHelpers = helpersOf(first.pid!);
    const live = await holding('uid65534', policy, () => true);
    writeFileSync(go, '');
    expect(await ended).toBe(0);
    // Its helper is done with the sandbox when it is gone (it may answer first).
    expect(await until(() => rootHelpers.every((pid) => !existsSync(`/proc/${pid}`)))).toBe(true);
    expect(there(), 'removed from under a live sandbox').toEqual([true, true]);
    await live.killOutright();
    // Neither the other caller's helper (not the owner) nor root's, gone by then, removed
    // them: root's kept list names them for its next start.
    expect(there()).toEqual([true, true]);
    nextStart('root');
    expect(there(), 'left behind once nobody stood on them').toEqual([false, false]);
  }, 90_000);
});
