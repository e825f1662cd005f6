// File-system rules against every path to the same object (aliases, ancestors, symlinks,
// things created later), and exec control by every route: each case of paths/cases.cjs
// through each way a command starts (cold, pool, fork, overlay, ephemeral), as the test
// user and, when that is root, as uid 65534 (setpriv). The runner is a plain Node process
// per identity; this file turns its verdicts into one test each.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { hasCommand, isRoot, root } from './helpers';

const NOBODY = 65534;
const { CASES, MODES } = require('./paths/cases.cjs') as {
  CASES: { id: string; modes?: string[]; identities?: string[] }[];
  MODES: string[];
};
const requireAll = process.env.CORRAL_REQUIRE_ALL === '1';
const missing = ['python3', 'setpriv'].filter((c) => !hasCommand(c));
const identities = isRoot && !missing.includes('setpriv') ? ['root', 'uid65534'] : [isRoot ? 'root' : 'user'];
if (!isRoot) console.log('paths tests: not root, so they run only as this user');
if (missing.length) console.log(`paths tests: missing ${missing.join(', ')}`);

type Verdict = { id: string; mode: string; verdict: string };
const verdicts: Record<string, Verdict[] | string> = {};
let base = '';

function runAs(identity: string): Verdict[] | string {
  const scratch = join(base, identity);
  mkdirSync(scratch);
  let pkg = root;
  let cmd = process.execPath;
  let args: string[] = [];
  if (identity === 'uid65534') {
    // A copy of the built package that user can read, and a scratch directory it owns.
    pkg = join(base, 'pkg');
    chownSync(scratch, NOBODY, NOBODY);
    cmd = 'setpriv';
    args = ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', process.execPath];
  }
  args.push(join(base, 'paths', 'runner.cjs'), pkg, scratch, identity);
  const fixtures = isRoot ? prepare(scratch, identity === 'uid65534' ? 0 : NOBODY) : '';
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: scratch, CORRAL_PATHS_FIXTURES: fixtures },
    cwd: scratch,
    timeout: 600_000,
    maxBuffer: 1 << 26,
  });
  try {
    return JSON.parse(r.stdout) as Verdict[];
  } catch {
    return `the runner printed ${JSON.stringify(r.stdout.slice(0, 2000))} / ${r.stderr.slice(0, 4000)}`;
  }
}

const mounted: string[] = [];

/**
 * What only root can set up, for cases that need it: a Unix socket in a directory the
 * runner's user cannot enter (owned by `stranger`), and a tree with a mount point inside.
 */
function prepare(scratch: string, stranger: number): string {
  const dir = join(scratch, 'fixtures');
  mkdirSync(join(dir, 'unreachable', 'u'), { recursive: true });
  const bound = spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', join(dir, 'unreachable', 'u', 's')]);
  if (bound.status !== 0) throw new Error(`binding a socket: ${bound.stderr}`);
  chownSync(join(dir, 'unreachable', 'u'), stranger, stranger);
  chmodSync(join(dir, 'unreachable', 'u'), 0o700);
  mkdirSync(join(dir, 'mounted', 'sub'), { recursive: true });
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0777', 'corral-test', join(dir, 'mounted', 'sub')]);
  if (m.status !== 0) throw new Error(`mounting a tmpfs: ${m.stderr}`);
  mounted.push(join(dir, 'mounted', 'sub'));
  for (const p of [scratch, dir, join(dir, 'unreachable'), join(dir, 'mounted')]) chownSync(p, stranger === 0 ? NOBODY : 0, stranger === 0 ? NOBODY : 0);
  return dir;
}

beforeAll(() => {
  base = mkdtempSync('/var/tmp/corral-paths-');
  chmodSync(base, 0o755);
  cpSync(join(__dirname, 'paths'), join(base, 'paths'), { recursive: true });
  if (identities.includes('uid65534')) {
    const pkg = join(base, 'pkg');
    for (const f of ['dist', 'python', 'package.json', 'binding.cjs', 'corral-helper', ...readdirSync(root).filter((f) => f.endsWith('.node'))]) {
      cpSync(join(root, f), join(pkg, f), { recursive: true });
    }
  }
  for (const identity of identities) verdicts[identity] = runAs(identity);
}, 1_200_000);
afterAll(() => {
  for (const m of mounted) spawnSync('umount', [m]);
  rmSync(base, { recursive: true, force: true });
});

it('has what the cases need', () => {
  if (requireAll) expect(missing).toEqual([]);
});

for (const identity of identities) {
  describe(`as ${identity}`, () => {
    it('the runner ran', () => expect(typeof verdicts[identity] === 'string' ? verdicts[identity] : '').toBe(''));
    for (const c of CASES) {
      if (c.identities && !c.identities.includes(identity)) continue;
      for (const mode of c.modes ?? MODES) {
        it(`${c.id} (${mode})`, () => {
          const all = verdicts[identity];
          if (typeof all === 'string') throw new Error(all);
          const v = all.find((x) => x.id === c.id && x.mode === mode);
          expect(v?.verdict ?? 'no verdict').toBe('');
        });
      }
    }
  });
}
