// Overlay change listings and commits tell the truth: types, replaced trees, symlink
// targets, modes, names that are not UTF-8 or hold control characters; commit stages
// everything before it applies anything, and undoes what it applied when a step fails.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { corral, hostDir, isRoot, prerequisite, runCli } from './helpers';

const { run } = corral;
const sh = (script: string) => ['/bin/sh', '-c', script];
const overlay = (dir: string) => ({ fs: { write: [dir], writeMode: 'overlay' as const } });

let tree: ReturnType<typeof hostDir>;
let proj = '';
beforeEach(() => {
  tree = hostDir('corral-changes-');
  proj = join(tree.path, 'proj');
  mkdirSync(join(proj, '.git', 'hooks'), { recursive: true });
  writeFileSync(join(proj, '.git', 'config'), '[core]\n');
  writeFileSync(join(proj, '.git', 'hooks', 'pre-commit'), '#!/bin/sh\n');
  writeFileSync(join(proj, 'a.txt'), 'original a\n');
  writeFileSync(join(proj, 'zz.txt'), 'original zz\n');
});
afterEach(() => tree.cleanup());

/** No temporary names of commit's are left anywhere below `dir`. */
function leftovers(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      if (n.startsWith('.corral-commit-')) out.push(join(d, n));
      if (lstatSync(join(d, n)).isDirectory()) walk(join(d, n));
    }
  };
  walk(dir);
  return out;
}

describe('the change listing says what commit will do', () => {
  it('shows a directory replaced by a file, and commit does exactly that', async () => {
    const r = await run(overlay(proj), sh(`cd ${proj} && rm -rf .git && echo gitdir: x > .git`));
    const c = r.changes!.files.find((f) => f.path === join(proj, '.git'))!;
    expect(c).toMatchObject({ kind: 'replaced', type: 'file', previousType: 'dir', dir: false, size: 10 });
    expect(r.changes!.files).toHaveLength(1);
    await r.changes!.commit();
    expect(readFileSync(join(proj, '.git'), 'utf8')).toBe('gitdir: x\n');
  });

  it('shows symlinks as symlinks, with their targets', async () => {
    const r = await run(overlay(proj), sh(`cd ${proj} && rm a.txt && ln -s /etc/shadow a.txt && ln -s ../up new-link`));
    const byName = Object.fromEntries(r.changes!.files.map((f) => [f.path.slice(proj.length + 1), f]));
    expect(byName['a.txt']).toMatchObject({ kind: 'replaced', type: 'symlink', previousType: 'file', target: '/etc/shadow' });
    expect(byName['new-link']).toMatchObject({ kind: 'added', type: 'symlink', target: '../up', size: 5 });
    await r.changes!.commit();
    expect(readlinkSync(join(proj, 'a.txt'))).toBe('/etc/shadow');
  });

  it('keeps a name that is not UTF-8, lists it with its bytes, and commits it', async () => {
    const r = await run(overlay(proj), ['/usr/bin/python3', '-c', `import os; open(os.path.join(b"${proj}", b"bad\\xff\\xfename"), "w").write("x")`]);
    expect(r.exitCode).toBe(0);
    expect(r.changes, 'the listing must not vanish').toBeDefined();
    const c = r.changes!.files.find((f) => f.rawPath)!;
    expect(c.path).toBe(`${proj}/bad\ufffd\ufffdname`);
    expect(c.rawPath!.equals(Buffer.concat([Buffer.from(`${proj}/bad`), Buffer.from([0xff, 0xfe]), Buffer.from('name')]))).toBe(true);
    await r.changes!.commit();
    const names = spawnSync('/usr/bin/python3', ['-c', `import os; print([n.hex() for n in os.listdir(b"${proj}")])`], { encoding: 'utf8' }).stdout;
    expect(names).toContain(Buffer.from('bad\xff\xfename', 'latin1').toString('hex'));
  });

  it('never carries set-user-ID or set-group-ID bits to the host, and says so', async () => {
    // The command's seccomp filter refuses set-id modes; where a command could set them all
    // the same, commit still drops them and the listing says so.
    const r = await run(overlay(proj), sh(`cd ${proj} && cp /bin/true t && mkdir d && touch d/f && { chmod 6755 t || chmod 755 t; } && { chmod 2775 d || chmod 775 d; } && { chmod 4644 a.txt || chmod 644 a.txt; }`));
    expect(r.exitCode).toBe(0);
    const byName = Object.fromEntries(r.changes!.files.map((f) => [f.path.slice(proj.length + 1), f]));
    expect(byName['t']).toMatchObject({ kind: 'added', type: 'file', mode: 0o755 });
    expect(byName['d']).toMatchObject({ kind: 'added', type: 'dir', mode: 0o775 });
    expect(byName['a.txt']).toMatchObject({ kind: 'modified', mode: 0o644 });
    for (const [name, bits] of [['t', 0o6000], ['d', 0o2000], ['a.txt', 0o4000]] as const) expect([undefined, bits]).toContain(byName[name].droppedMode);
    await r.changes!.commit();
    expect(statSync(join(proj, 't')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(proj, 'd')).mode & 0o7777).toBe(0o775);
    expect(statSync(join(proj, 'a.txt')).mode & 0o7777).toBe(0o644);
    // No extended attributes at all, so no file capabilities either.
    const xattrs = spawnSync('/usr/bin/python3', ['-c', `import os; print(os.listxattr("${join(proj, 't')}"))`], { encoding: 'utf8' }).stdout.trim();
    expect(xattrs).toBe('[]');
  });

  it('gives files exactly their listed mode, whatever the caller\'s umask', async () => {
    const r = await run(overlay(proj), sh(`cd ${proj} && echo x > g && chmod 0664 g && mkdir -p w/x && chmod 0777 w`));
    const old = process.umask(0o077);
    try {
      await r.changes!.commit();
    } finally {
      process.umask(old);
    }
    expect(statSync(join(proj, 'g')).mode & 0o777).toBe(0o664);
    expect(statSync(join(proj, 'w')).mode & 0o777).toBe(0o777);
  });

  it('lists sockets as other, and never creates them on the host', async () => {
    const r = await run(overlay(proj), ['/usr/bin/python3', '-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind("${proj}/sock"); import os; os.unlink("${proj}/zz.txt"); s2 = socket.socket(socket.AF_UNIX); s2.bind("${proj}/zz.txt")`]);
    const byName = Object.fromEntries(r.changes!.files.map((f) => [f.path.slice(proj.length + 1), f]));
    expect(byName['sock']).toMatchObject({ kind: 'added', type: 'other' });
    expect(byName['zz.txt']).toMatchObject({ kind: 'replaced', type: 'other', previousType: 'file' });
    await r.changes!.commit();
    expect(existsSync(join(proj, 'sock'))).toBe(false);
    expect(existsSync(join(proj, 'zz.txt'))).toBe(false);
  });

  it('lists what an opaque directory hides as deleted, however many the host has', async () => {
    mkdirSync(join(proj, 'many'));
    for (let i = 0; i < 3000; i++) writeFileSync(join(proj, 'many', `f${i}`), '');
    mkdirSync(join(proj, 'many', 'sub', 'deeper'), { recursive: true });
    const r = await run(overlay(proj), sh(`cd ${proj} && rm -rf many && mkdir -p many/sub && echo kept > many/f7`));
    const rel = r.changes!.files.map((f) => `${f.kind} ${f.path.slice(proj.length + 1)}`);
    expect(rel.filter((l) => l.startsWith('deleted many/f'))).toHaveLength(2999);
    expect(rel).toContain('modified many/f7');
    expect(rel).toContain('deleted many/sub/deeper');
    await r.changes!.commit();
    expect(readdirSync(join(proj, 'many')).sort()).toEqual(['f7', 'sub']);
    expect(readdirSync(join(proj, 'many', 'sub'))).toEqual([]);
    expect(leftovers(proj)).toEqual([]);
  });
});

describe('commit stages everything, then applies it, or nothing', () => {
  it('commits names of 255 bytes (no temporary name is built from them)', async () => {
    const long = 'n'.repeat(255);
    const r = await run(overlay(proj), sh(`cd ${proj} && echo 1 > a.txt && echo 2 > ${long} && mkdir d${long.slice(1)} && echo 3 > zz.txt`));
    await r.changes!.commit();
    expect(readFileSync(join(proj, 'a.txt'), 'utf8')).toBe('1\n');
    expect(readFileSync(join(proj, long), 'utf8')).toBe('2\n');
    expect(readFileSync(join(proj, 'zz.txt'), 'utf8')).toBe('3\n');
    expect(leftovers(proj)).toEqual([]);
  });

  it('lists and commits a tree 700 levels deep without recursion', async () => {
    const r = await run(overlay(proj), sh(`cd ${proj} && i=0; while [ $i -lt 700 ]; do mkdir d; cd d; i=$((i+1)); done; echo bottom > f`));
    expect(r.changes!.error).toBeUndefined();
    expect(r.changes!.files).toHaveLength(701);
    await r.changes!.commit();
    expect(readFileSync(join(proj, 'd/'.repeat(700), 'f'), 'utf8')).toBe('bottom\n');
  });

  if (prerequisite('a commit that fails half-way (bind mounts need root)', isRoot ? null : 'not root')) {
    it('undoes what it applied when a later change cannot be applied', async () => {
      const r = await run(overlay(proj), sh(`cd ${proj} && echo new a > a.txt && rm -r .git && echo new zz > zz.txt && echo c > c.txt`));
      // zz.txt becomes a mount point after the run: renaming over it fails (EBUSY).
      writeFileSync(join(tree.path, 'cover'), 'cover\n');
      expect(spawnSync('mount', ['--bind', join(tree.path, 'cover'), join(proj, 'zz.txt')]).status).toBe(0);
      try {
        const err = await r.changes!.commit().then(() => null, (e: Error) => e);
        expect(err?.message).toMatch(/zz\.txt.*nothing was applied/s);
      } finally {
        spawnSync('umount', [join(proj, 'zz.txt')]);
      }
      expect(readFileSync(join(proj, 'a.txt'), 'utf8')).toBe('original a\n');
      expect(readFileSync(join(proj, '.git', 'config'), 'utf8')).toBe('[core]\n');
      expect(existsSync(join(proj, 'c.txt'))).toBe(false);
      expect(readFileSync(join(proj, 'zz.txt'), 'utf8')).toBe('original zz\n');
      expect(leftovers(proj)).toEqual([]);
    });
  }
});

describe('the CLI review', () => {
  it('escapes control characters and shows types, so a name cannot forge a line', () => {
    const name = `x\u001b[1A\u001b[2K\r  M  README.md (3 B)\nhidden`;
    const r = runCli(['run', '--write', proj, '--write-mode', 'overlay', '--', '/usr/bin/python3', '-c', `open(${JSON.stringify(join(proj, name))}, "w").write("x"); import os; os.symlink("/etc/shadow", ${JSON.stringify(join(proj, 'l'))})`]);
    expect(r.stderr).toContain('x\\x1b[1A\\x1b[2K\\x0d  M  README.md (3 B)\\x0ahidden (1 B, mode 0644)');
    expect(r.stderr).toContain(`A  ${proj}/l (symlink, -> /etc/shadow)`);
    expect([...r.stderr].filter((c) => c < ' ' && c !== '\n')).toEqual([]);
  });
});
