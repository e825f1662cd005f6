// Filesystem isolation in depth: hidden secrets, protected paths, volumes,
// host sockets, ephemeral and overlay writes — against the real kernel.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync, lstatSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import { join, relative } from 'node:path';
import { corral, hostDir, runCli } from './helpers';

const { run, plan } = corral;
const sh = (script: string) => ['/bin/sh', '-c', script];

/** A digest of a whole tree: names, types, modes and contents. */
function treeHash(root: string): string {
  const h = createHash('sha256');
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      h.update(`${relative(root, p)}|${st.mode}|${st.size}\n`);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) h.update(readFileSync(p));
    }
  };
  walk(root);
  return h.digest('hex');
}

let tree: ReturnType<typeof hostDir>;
let proj = '';
beforeEach(() => {
  tree = hostDir('corral-fs-');
  proj = join(tree.path, 'proj');
  mkdirSync(join(proj, '.git'), { recursive: true });
  mkdirSync(join(proj, 'src'));
  mkdirSync(join(tree.path, 'home', '.ssh'), { recursive: true });
  writeFileSync(join(proj, 'a.txt'), 'original a\n');
  writeFileSync(join(proj, 'b.txt'), 'original b\n');
  writeFileSync(join(proj, 'src', 'main.c'), 'int main(){}\n');
  writeFileSync(join(proj, '.env'), 'TOKEN=secret\n');
  writeFileSync(join(proj, '.git', 'config'), '[core]\n');
  writeFileSync(join(tree.path, 'home', '.ssh', 'id_ed25519'), 'PRIVATE KEY\n');
  writeFileSync(join(tree.path, 'home', '.ssh', 'known_hosts'), 'host key\n');
  writeFileSync(join(tree.path, 'home', 'notes'), 'visible\n');
});
afterEach(() => tree.cleanup());

describe('deny', () => {
  it('hides files and directories inside readable trees, names included', async () => {
    const home = join(tree.path, 'home');
    const r = await run({ fs: { read: [home, proj], deny: [join(home, '.ssh'), join(proj, '.env')] } }, sh(`cat ${home}/notes; ls -a ${home}/.ssh; cat ${home}/.ssh/id_ed25519; wc -c < ${proj}/.env`));
    // The directory is an empty, removed stand-in: not even . and .. are listed.
    expect(r.stdout).toBe(`visible\n0\n`);
    expect(r.stderr).toMatch(/id_ed25519: No such file or directory/);
    const w = await run({ fs: { write: [home], deny: [join(home, '.ssh')] } }, sh(`echo x > ${home}/.ssh/new`));
    expect(w.exitCode).not.toBe(0);
    expect(existsSync(join(home, '.ssh', 'new'))).toBe(false);
  });

  it('survives the command rearranging a denied path\'s directories in its own grant', async () => {
    const home = join(tree.path, 'home');
    mkdirSync(join(home, '.aws'));
    writeFileSync(join(home, '.aws', 'credentials'), 'AWS-SECRET\n');
    // Each step has init look again: a directory of the command's own under the denied
    // name, a file and then a symlink where the denied file was, a symlink where its
    // directory was, a burst of new directories. None may end the run, and the real file
    // stays covered under its new name (the mask moved along with its directory).
    const script = [
      `cd ${home}`,
      'mv .aws moved; mkdir .aws; echo mine > .aws/credentials; sleep 0.1',
      'mv .aws gone1; mkdir .aws; ln -s ../notes .aws/credentials; sleep 0.1',
      'mv .aws gone2; ln -s moved .aws; sleep 0.1',
      'mv .aws gone3; for i in 1 2 3 4 5 6 7 8; do mkdir .aws; mv .aws burst$i; done; mkdir .aws; sleep 0.1',
      'cat moved/credentials gone1/credentials gone2/credentials; echo done',
    ].join('; ');
    const r = await run({ fs: { write: [home], deny: [join(home, '.aws', 'credentials')] } }, sh(script));
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/done\n$/);
    expect(r.stdout + r.stderr).not.toContain('AWS-SECRET');
  });

  it('shows the absolute result in the plan and refuses a grant inside a denied path', () => {
    const p = plan({ fs: { read: [tree.path], deny: [join(tree.path, 'home', '.ssh')] } });
    expect(p.sandbox.mounts).toContainEqual({ type: 'mask', target: join(tree.path, 'home', '.ssh') });
    expect(() => plan({ fs: { read: [tree.path, join(tree.path, 'home', '.ssh', 'known_hosts')], deny: [join(tree.path, 'home', '.ssh')] } })).toThrow(/fs\.read\[1\]/);
  });
});

describe('writes stay in scope', () => {
  it('leaves the host byte-identical after writes outside scope', async () => {
    const before = treeHash(tree.path);
    const attempts = [`echo x > ${proj}/a.txt`, `rm ${proj}/b.txt`, `mkdir ${proj}/new`, `ln -s /etc ${proj}/link`, `mv ${proj}/.git ${proj}/git2`, `ln ${proj}/a.txt ${proj}/src/hard`, `touch -d 2001-01-01 ${proj}/a.txt`, `chmod 777 ${proj}/a.txt`];
    const r = await run({ fs: { read: [tree.path], write: [join(proj, 'src')] } }, sh(attempts.map((a) => `${a} 2>/dev/null || echo refused`).join('; ') + `; echo ok > ${proj}/src/fine`));
    expect(r.stdout).toBe('refused\n'.repeat(attempts.length));
    expect(readFileSync(join(proj, 'src', 'fine'), 'utf8')).toBe('ok\n');
    const { rmSync } = await import('node:fs');
    rmSync(join(proj, 'src', 'fine')); // undo the allowed write before comparing
    expect(existsSync(join(proj, 'src', 'hard'))).toBe(false);
    expect(treeHash(tree.path)).toBe(before);
  });
});

describe('protect', () => {
  it('keeps existing and not-yet-existing paths read-only inside a writable checkout', async () => {
    const r = await run({ fs: { write: [proj], protect: [join(proj, '.git/hooks'), join(proj, '.git/config')] } }, sh(`cd ${proj}; mkdir -p .git/hooks; echo evil > .git/hooks/pre-commit || echo refused; echo evil >> .git/config || echo refused; echo fine > a.txt`));
    expect(r.stdout).toBe('refused\nrefused\n');
    expect(r.stderr).toMatch(/config: Read-only file system/);
    expect(readFileSync(join(proj, '.git', 'config'), 'utf8')).toBe('[core]\n');
    expect(readFileSync(join(proj, 'a.txt'), 'utf8')).toBe('fine\n');
    // The placeholder that stood in for .git/hooks is gone again.
    expect(existsSync(join(proj, '.git', 'hooks'))).toBe(false);
  });
});

describe('volumes', () => {
  it('binds host paths elsewhere, read-only or read-write', async () => {
    const r = await run({ fs: { volumes: [{ source: join(proj, 'src'), target: '/work/src', readOnly: true }, { source: join(tree.path, 'home'), target: '/home/me' }] } }, sh('cat /work/src/main.c; echo hi > /home/me/out; echo no > /work/src/x'));
    expect(r.stdout).toBe('int main(){}\n');
    expect(r.stderr).toMatch(/Read-only file system/);
    expect(readFileSync(join(tree.path, 'home', 'out'), 'utf8')).toBe('hi\n');
    expect(existsSync(join(proj, 'src', 'x'))).toBe(false);
  });
});

describe('host Unix sockets', () => {
  let server: Server;
  const sock = () => join(proj, 'agent.sock');
  beforeEach(async () => {
    server = createServer((s) => s.end('agent says hi\n'));
    await new Promise<void>((resolve) => server.listen(sock(), resolve));
  });
  afterEach(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const connect = (path: string) => ['python3', '-c', `import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect(${JSON.stringify(path)}); print(s.recv(100).decode().strip())\nexcept OSError as e: print('refused', e.errno)`];

  it('refuses a socket under a readable path', async () => {
    const r = await run({ fs: { read: [proj] } }, connect(sock()));
    expect(r.stdout).toMatch(/^refused/);
  });

  it('connects to an explicitly allowed socket, inside or outside the granted trees', async () => {
    expect((await run({ fs: { read: [proj], allowUnixSockets: [sock()] } }, connect(sock()))).stdout).toBe('agent says hi\n');
    expect((await run({ fs: { allowUnixSockets: [sock()] } }, connect(sock()))).stdout).toBe('agent says hi\n');
  });
});

describe('ephemeral writes', () => {
  it('lets the command write anywhere it sees and leaves the host untouched', async () => {
    const before = treeHash(tree.path);
    const r = await run({ fs: { read: [tree.path], writeMode: 'ephemeral' }, limits: { disk: '16M' } }, sh(`echo changed > ${proj}/a.txt && rm ${proj}/b.txt && mkdir ${proj}/d && echo x > /usr/corral-ephemeral && cat ${proj}/a.txt /usr/corral-ephemeral`));
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('changed\nx\n');
    expect(treeHash(tree.path)).toBe(before);
    expect(existsSync('/usr/corral-ephemeral')).toBe(false);
    expect(r.changes).toBeUndefined();
  });

  it('caps the overlay with limits.disk', async () => {
    const r = await run({ fs: { write: [proj], writeMode: 'ephemeral' }, limits: { disk: '2M' } }, sh(`dd if=/dev/zero of=${proj}/big bs=1M count=8 2>&1 | grep -o "No space left on device"`));
    expect(r.stdout).toMatch(/No space left on device/);
  });
});

describe('overlay writes', () => {
  const script = (p: string) => `cd ${p} && echo new > c.txt && echo changed > a.txt && rm b.txt && mkdir -p d/e && echo deep > d/e/f && rm -r src`;

  it('lists the changes and leaves the host alone until commit', async () => {
    const before = treeHash(tree.path);
    const r = await run({ fs: { write: [proj], writeMode: 'overlay' } }, sh(script(proj)));
    expect(r.exitCode).toBe(0);
    const files = r.changes!.files.map((c) => `${c.kind} ${relative(proj, c.path)}${c.dir ? '/' : ''} ${c.size}`);
    expect(files).toEqual(['modified a.txt 8', 'deleted b.txt 0', 'added c.txt 4', 'added d/ 0', 'added d/e/ 0', 'added d/e/f 5', 'deleted src/ 0']);
    expect(treeHash(tree.path)).toBe(before);
    r.changes!.discard();
    expect(treeHash(tree.path)).toBe(before);
    await expect(r.changes!.commit()).rejects.toThrow(/already committed or discarded/);
  });

  it('commit applies exactly those changes', async () => {
    const r = await run({ fs: { write: [proj], writeMode: 'overlay' } }, sh(script(proj)));
    // The same edits made directly, for comparison.
    const twin = hostDir('corral-twin-');
    const { cpSync } = await import('node:fs');
    cpSync(proj, join(twin.path, 'proj'), { recursive: true });
    await run({ fs: { write: [join(twin.path, 'proj')] } }, sh(script(join(twin.path, 'proj'))));
    await r.changes!.commit();
    expect(treeHash(proj)).toBe(treeHash(join(twin.path, 'proj')));
    expect(statSync(join(proj, 'd', 'e', 'f')).isFile()).toBe(true);
    twin.cleanup();
  });
});

describe('CLI', () => {
  it('exposes deny, protect, volumes and overlay review with --commit', () => {
    const denied = runCli(['run', '--read', proj, '--deny', join(proj, '.env'), '--', 'cat', join(proj, '.env')]);
    expect(denied.stdout).toBe('');
    const protectedRun = runCli(['run', '--write', proj, '--protect', join(proj, '.git/config'), '--', 'sh', '-c', `echo x >> ${proj}/.git/config`]);
    expect(protectedRun.status).not.toBe(0);
    const vol = runCli(['run', '--volume', `${proj}/src:/src:ro`, '--', 'cat', '/src/main.c']);
    expect(vol.stdout).toBe('int main(){}\n');
    const review = runCli(['run', '--write', proj, '--write-mode', 'overlay', '--', 'sh', '-c', `echo n > ${proj}/n.txt`]);
    expect(review.stderr).toMatch(/1 change captured:\n {2}A {2}.*n\.txt \(2 B, mode 0644\)/);
    expect(review.stderr).toMatch(/discarded/);
    expect(existsSync(join(proj, 'n.txt'))).toBe(false);
    const commit = runCli(['run', '--write', proj, '--write-mode', 'overlay', '--commit', '--', 'sh', '-c', `echo n > ${proj}/n.txt`]);
    expect(commit.stderr).toMatch(/applied/);
    expect(readFileSync(join(proj, 'n.txt'), 'utf8')).toBe('n\n');
  });
});
