// A root caller's write grants show host root's files as the sandbox root's own, and a
// shared writable mapping rewrites a file without clearing its set-id bits. So the helper
// refuses every open of a set-user-ID, set-group-ID (group-executable) or file-capability
// file through a writable grant (fanotify open permission events, answered by a responder
// process it forks). Here: what is refused and what is not, where the guard does not apply,
// and that a guarded sandbox does not outlive the responder.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, chmodSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { corral, helpersOf, hostDir, isRoot } from './helpers';

const requireAll = process.env.CORRAL_REQUIRE_ALL === '1';
const guard = isRoot ? corral.check().identity.setidGuard : false;
const why = !isRoot ? 'only a root caller\'s grants are idmapped (and guarded)' : !guard ? `this host withholds fanotify permission events: ${corral.check().identity.setidGuardDetail}` : '';
if (why) {
  if (requireAll && isRoot) throw new Error(`set-id guard tests: ${why}`);
  console.log(`set-id guard tests skipped: ${why}`);
}

const dir = hostDir('corral-setid-guard-');
afterAll(() => dir.cleanup());
const w = join(dir.path, 'w');
const r = join(dir.path, 'r');
for (const d of [w, r]) {
  mkdirSync(d);
  copyFileSync('/bin/true', join(d, 'suid'));
  chmodSync(join(d, 'suid'), 0o4755);
  writeFileSync(join(d, 'plain'), 'plain\n');
}
copyFileSync('/bin/true', join(w, 'sgid'));
chmodSync(join(w, 'sgid'), 0o2755);
writeFileSync(join(w, 'locking'), 'g+s without g+x: a mandatory-locking marker\n', { mode: 0o2644 });
chmodSync(join(w, 'locking'), 0o2644);

/** Tries to read each file; prints `name=ok` or `name=refused`. */
const tryRead = (files: string[]) => ['/bin/sh', '-c', files.map((f) => `if head -c1 ${f} >/dev/null 2>&1; then echo ${f}=ok; else echo ${f}=refused; fi`).join('; ')];

describe.skipIf(!!why)('the set-id guard', () => {
  it('refuses set-id files through a write grant, and nothing else', async () => {
    const files = [...['suid', 'sgid', 'locking', 'plain'].map((f) => join(w, f)), join(r, 'suid')];
    const [sh, c, script] = tryRead(files);
    const res = await corral.run({ fs: { write: [w], read: [r] } }, [sh, c, `${script}; echo new > ${w}/new; cat ${w}/new; ls -l ${w}/suid`]);
    expect(res.caveats.map((c) => c.code)).not.toContain('SETID_UNGUARDED');
    expect(res.stdout).toContain(`${w}/suid=refused`);
    expect(res.stdout).toContain(`${w}/sgid=refused`);
    expect(res.stdout).toContain(`${w}/locking=ok`);
    expect(res.stdout).toContain(`${w}/plain=ok`);
    // A read grant cannot be written through, so its set-id files stay readable.
    expect(res.stdout).toContain(`${r}/suid=ok`);
    // New files, and the listing of a refused one, are as ever.
    expect(res.stdout).toContain('new\n');
    expect(res.stdout).toMatch(/-rwsr-xr-x .*\/w\/suid/);
  });

  it('holds beneath what the view mounts inside the grant (pins are copies of its mount)', async () => {
    const sub = join(w, 'pinned');
    mkdirSync(sub);
    copyFileSync('/bin/true', join(sub, 'suid'));
    chmodSync(join(sub, 'suid'), 0o4755);
    writeFileSync(join(sub, 'keep'), 'keep\n');
    for (const extra of [{ protect: [join(sub, 'keep')] }, { noexec: [sub] }]) {
      const res = await corral.run({ fs: { write: [w], ...extra } }, tryRead([join(sub, 'suid'), join(sub, 'keep')]));
      expect(res.stdout, JSON.stringify(extra)).toContain(`${sub}/suid=refused`);
      expect(res.stdout, JSON.stringify(extra)).toContain(`${sub}/keep=ok`);
    }
  });

  it('asks again about a file the host made set-id after an earlier run opened it', async () => {
    const f = join(w, 'later');
    copyFileSync('/bin/true', f);
    chmodSync(f, 0o755);
    expect((await corral.run({ fs: { write: [w] } }, tryRead([f]))).stdout).toContain(`${f}=ok`);
    chmodSync(f, 0o4755);
    expect((await corral.run({ fs: { write: [w] } }, tryRead([f]))).stdout).toContain(`${f}=refused`);
  });

  it('asks again in a warm sandbox handed its command after the host made a file set-id', async () => {
    const f = join(w, 'later-pooled');
    copyFileSync('/bin/true', f);
    chmodSync(f, 0o755);
    const pool = new corral.Pool({ fs: { write: [w] } }, { size: 1, maxSize: 1 });
    try {
      // The pool's sandbox is up before another run finds the file plain.
      await pool.run(['true']);
      await waitFor(() => (pool.stats().ready >= 1 ? true : undefined));
      expect((await corral.run({ fs: { write: [w] } }, tryRead([f]))).stdout).toContain(`${f}=ok`);
      chmodSync(f, 0o4755);
      expect((await pool.run(tryRead([f]))).stdout).toContain(`${f}=refused`);
    } finally {
      await pool.close();
    }
  });

  it('does not apply where writes never reach the host', async () => {
    for (const writeMode of ['overlay', 'ephemeral'] as const) {
      const res = await corral.run({ fs: { write: [w], writeMode } }, tryRead([join(w, 'suid')]));
      expect(res.stdout, writeMode).toContain(`${w}/suid=ok`);
    }
  });

  it('holds for every sandbox of a pool', async () => {
    const pool = new corral.Pool({ fs: { write: [w] } }, { size: 2 });
    try {
      for (let i = 0; i < 3; i++) expect((await pool.run(tryRead([join(w, 'suid')]))).stdout).toContain('=refused');
    } finally {
      await pool.close();
    }
  });

  it('ends a guarded sandbox when its responder dies', async () => {
    const p = corral.spawn({ fs: { write: [w] } }, ['sleep', '60']);
    const helper = await waitFor(() => helpersOf(process.pid)[0]);
    // The responder: the helper's child that holds a fanotify group.
    const responder = await waitFor(() => children(helper).find((c) => fdsOf(c).some((l) => l.includes('[fanotify]'))));
    process.kill(Number(responder), 'SIGKILL');
    const err = await p.wait().then(
      () => null,
      (e) => e,
    );
    expect(err?.message ?? 'the sandbox ran on').toMatch(/set-id guard stopped/);
    // The next guarded run gets a new responder.
    expect((await corral.run({ fs: { write: [w] } }, tryRead([join(w, 'suid')]))).stdout).toContain('=refused');
  });
});

async function waitFor<T>(f: () => T | undefined): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = f();
    if (v) return v;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error('timed out waiting');
}

function children(pid: string): string[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
  } catch {
    return [];
  }
}

function fdsOf(pid: string): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).map((f) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${f}`);
      } catch {
        return '';
      }
    });
  } catch {
    return [];
  }
}
