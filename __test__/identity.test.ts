// A root caller's sandbox has no more power over the host than a non-root caller's: it runs
// as unprivileged host ids, reads no root-only file outside its grants, and what it writes
// in them still lands owned by the caller. Nobody's sandbox leaves a set-user-ID,
// set-group-ID or file-capability file behind. fixtures/identity-probe.cjs runs the attacks
// of fixtures/setid_attacks.py through every start mode (cold under three seccomp profiles,
// a volume, a pool, a copy-on-write clone, overlay with commit, ephemeral), as the test user
// and, dropped with setpriv, as uid 65534; host witnesses look at what is left.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasCommand, isRoot, root } from './helpers';

const NOBODY = 65534;
const requireAll = process.env.CORRAL_REQUIRE_ALL === '1';
const missing = !hasCommand('python3') ? 'python3 is not installed' : '';
if (missing) {
  if (requireAll) throw new Error(`identity tests need ${missing}`);
  console.log(`identity tests skipped: ${missing}`);
}
const rootless = !isRoot ? 'the tests are not running as root' : !hasCommand('setpriv') ? 'setpriv (util-linux) is not installed' : '';
if (rootless && !missing) {
  if (requireAll && isRoot) throw new Error(`identity tests as uid ${NOBODY} need ${rootless}`);
  console.log(`identity tests as uid ${NOBODY} skipped: ${rootless}`);
}

/** What must be refused, whatever the caller and the start mode. */
const REFUSED = [
  'chmod 4755',
  'chmod 2755',
  'fchmod 4755',
  'fchmodat2 6755',
  'open O_CREAT 4755',
  'creat 2755',
  'O_TMPFILE 4755 + link',
  'mknod S_IFREG|4755',
  'mkdir 2755',
  'mkdir, chmod g+s',
  'io_uring_setup',
  'setxattr security.capability v2',
  'lsetxattr security.capability v2',
  'fsetxattr security.capability v2',
  'setxattrat security.capability v2',
  'setxattr security.capability v3',
  'lsetxattr security.capability v3',
  'fsetxattr security.capability v3',
  'setxattrat security.capability v3',
  'unshare user namespace',
];
const MODES = ['cold default', 'cold permissive', 'cold strict', 'volume', 'pool', 'fork', 'overlay', 'ephemeral'];
/** Start modes whose writes reach the host directly. */
const DIRECT = ['cold default', 'cold permissive', 'cold strict', 'volume', 'pool', 'fork'];
const PROC = ['kpageflags', 'kpagecount', 'slabinfo', 'vmallocinfo', 'kmsg', 'pagetypeinfo'];

type Outcome = { attacks: Record<string, string | number>; host: { setid: string[]; owners: Record<string, number> }; exitCode: number };
type Report = { error?: string; check: ReturnType<typeof import('../src/index').check>; plan: ReturnType<typeof import('../src/index').plan>; modes: Record<string, Outcome> };

const base = mkdtempSync('/var/tmp/corral-identity-');
chmodSync(base, 0o755);
// Root-only host files inside a tree every sandbox sees (/etc): a file, and a file in a
// root-only directory.
const secrets = isRoot ? [join('/etc', `.corral-identity-${process.pid}`), join('/etc', `.corral-identity-dir-${process.pid}`, 'plain')] : [];

beforeAll(() => {
  const pkg = join(base, 'pkg');
  for (const f of ['dist', 'package.json', 'binding.cjs', 'corral-helper', 'python', ...readdirSync(root).filter((f) => f.endsWith('.node'))]) {
    cpSync(join(root, f), join(pkg, f), { recursive: true });
  }
  for (const f of ['setid_attacks.py', 'identity-probe.cjs']) cpSync(join(__dirname, 'fixtures', f), join(base, f));
  if (isRoot) {
    writeFileSync(secrets[0], 'ROOT ONLY\n', { mode: 0o600 });
    mkdirSync(join('/etc', `.corral-identity-dir-${process.pid}`), { mode: 0o700 });
    writeFileSync(secrets[1], 'behind a root-only directory\n', { mode: 0o644 });
  }
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
  if (isRoot) {
    rmSync(secrets[0], { force: true });
    rmSync(join('/etc', `.corral-identity-dir-${process.pid}`), { recursive: true, force: true });
  }
});

function probe(uid: number | null): Report {
  const scratch = join(base, `scratch-${uid ?? 'self'}`);
  mkdirSync(scratch);
  const args = [join(base, 'identity-probe.cjs'), join(base, 'pkg'), scratch, join(base, 'setid_attacks.py'), ...secrets];
  let r;
  if (uid === null) {
    r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 240_000 });
  } else {
    chownSync(scratch, uid, uid);
    r = spawnSync('setpriv', ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', '--', process.execPath, ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, HOME: scratch },
      cwd: base,
      timeout: 240_000,
    });
  }
  try {
    return JSON.parse(r.stdout);
  } catch {
    return { error: `probe printed ${JSON.stringify(r.stdout)} / ${r.stderr}` } as Report;
  }
}

const identities: { name: string; uid: number | null; expectUid: number; skip: string }[] = [
  { name: `as the test user (uid ${process.getuid?.()})`, uid: null, expectUid: process.getuid?.() ?? 0, skip: missing },
  { name: `as uid ${NOBODY}`, uid: NOBODY, expectUid: NOBODY, skip: missing || rootless },
];

for (const who of identities) {
  describe.skipIf(who.skip !== '')(`sandbox identity ${who.name}`, () => {
    let report: Report;
    beforeAll(() => {
      report = probe(who.uid);
    }, 300_000);

    it('the probe ran', () => expect(report.error).toBeUndefined());

    it('check() and plan() say which host ids the command gets', () => {
      const id = report.check.identity;
      if (who.expectUid === 0) {
        expect(id.rootMapsTo).toBeDefined();
        expect(id.rootMapsTo!.uid).not.toBe(0);
        expect(id.idmappedMounts).toBe(true);
        expect(report.plan.sandbox.identity).toMatchObject({ hostUid: id.rootMapsTo!.uid, hostGid: id.rootMapsTo!.gid });
        expect(report.plan.sandbox.identity!.idmapped).toContain(join(base, `scratch-${who.uid ?? 'self'}`));
        expect(report.plan.caveats).toEqual([]);
      } else {
        expect(report.plan.sandbox.identity).toBeUndefined();
      }
    });

    for (const mode of MODES) {
      describe(mode, () => {
        const m = () => report.modes[mode];

        it('ran to the end', () => {
          expect(m().attacks.error).toBeUndefined();
          expect(m().exitCode).toBe(0);
          expect(m().attacks.uid).toBe(who.expectUid);
        });

        it('no set-id mode, file capability or nested user namespace is allowed', () => {
          for (const a of REFUSED) expect(`${a}: ${m().attacks[a]}`).toMatch(/: refused: E[A-Z]+$/);
          // openat2 carries its mode in memory seccomp cannot read: ENOSYS, and libc falls back.
          expect(m().attacks.openat2).toBe('refused: ENOSYS');
          // Copies that try to keep a set-id mode keep the file, without the bits.
          for (const a of ['cp -a a set-id file', 'install -m 4755']) {
            const mode = String(m().attacks[a]);
            if (mode.startsWith('0o')) expect(Number.parseInt(mode.slice(2), 8) & 0o6000, `${a}: ${mode}`).toBe(0);
          }
        });

        it('leaves no set-id or capability file on the host', () => {
          expect(m().host.setid).toEqual([]);
        });

        it('reads no root-only file outside its grants, and the caller’s own file inside', () => {
          for (const s of secrets) expect(`${s}: ${m().attacks[`read ${s}`]}`).toMatch(/: refused: EACCES$/);
          for (const p of PROC) expect(`/proc/${p}: ${m().attacks[`read /proc/${p}`]}`).toMatch(/: (empty|refused: EACCES)$/);
          const mine = Object.keys(m().attacks).find((k) => k.startsWith('read ') && k.endsWith('/mine'))!;
          expect(m().attacks[mine]).toBe('read');
        });

        it.skipIf(who.expectUid !== 0 || !DIRECT.includes(mode))('writes where the mode lets every user write, as before its ids were shifted', () => {
          expect(m().attacks["write another user's world-writable file"]).toBe('made');
          expect(m().attacks["create in another user's world-writable directory"]).toBe('made');
        });

        it('what it writes lands owned by the caller', () => {
          const owners = m().host.owners;
          if (mode === 'ephemeral') {
            expect(owners.written).toBeUndefined();
          } else {
            expect(owners.written).toBe(who.expectUid);
            expect(owners.sh).toBe(who.expectUid);
          }
        });
      });
    }
  });
}
