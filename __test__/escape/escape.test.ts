// The escape suite: every case of cases.cjs through every way a command starts, as the
// test user and (when that is root) as uid 65534. A static probe attacks from inside; the
// engine's witnesses on the host record what got out. See README.md in this folder.
//
// CORRAL_ESCAPE_OPEN=1 runs only the open escapes (open-cases.cjs) instead of the suite.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { hasCommand, isRoot, root } from '../helpers';

const { select, MODES } = require('./engine.cjs') as {
  select: (...a: unknown[]) => { c: { id: string; covers: string }; mode: string }[];
  MODES: string[];
};
const { CASES } = require('./cases.cjs') as { CASES: unknown[] };
const { OPEN } = require('./open-cases.cjs') as { OPEN: unknown[] };

interface Outcome {
  id: string;
  mode: string;
  status: 'held' | 'escaped' | 'error' | 'skipped';
  findings: string[];
  probe?: unknown[];
  refused?: string;
  excusedBy?: string;
  [k: string]: unknown;
}

const NOBODY = 65534;
const open = process.env.CORRAL_ESCAPE_OPEN === '1';
const requireAll = process.env.CORRAL_REQUIRE_ALL === '1';
const me = isRoot ? 'root' : `uid${process.getuid!()}`;
const rootless = isRoot && hasCommand('setpriv');
if (isRoot && !rootless) console.log('escape suite: setpriv (util-linux) is missing, so it runs as root only');
const identities = rootless ? [me, `uid${NOBODY}`] : [me];

let base = '';
let why = '';
const results = new Map<string, Map<string, Outcome>>();
const summaries = new Map<string, Record<string, unknown>>();

/** Builds the probe; returns why it could not. */
function buildProbe(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const cc = ['cc', 'gcc'].find(hasCommand);
  if (!cc) return 'no C compiler (cc) on this machine';
  const r = spawnSync(cc, ['-static', '-O1', '-w', '-o', join(dir, 'probe'), join(__dirname, 'probe.c')], { encoding: 'utf8' });
  if (r.status !== 0) return `cc -static failed (the static C library may be missing): ${r.stderr.slice(0, 400)}`;
  return '';
}

/** Runs the engine as `who`; resolves with its result lines. */
function runEngine(who: string): Promise<{ lines: Outcome[]; summary: Record<string, unknown>; stderr: string }> {
  const engineDir = join(base, 'engine');
  const pkg = join(base, 'pkg');
  const scratch = join(base, who);
  mkdirSync(scratch, { recursive: true });
  chmodSync(scratch, 0o755);
  const args = [join(engineDir, 'engine.cjs'), '--pkg', pkg, '--probe', join(base, 'bin', 'probe'), '--scratch', join(scratch, 's'), '--jobs', '2'];
  if (open) args.push('--open');
  let cmd = process.execPath;
  if (who !== me) {
    chownSync(scratch, NOBODY, NOBODY);
    args.unshift('--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', process.execPath);
    cmd = 'setpriv';
  }
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: base, env: { PATH: process.env.PATH, HOME: scratch }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', () => {
      const lines: Outcome[] = [];
      let summary: Record<string, unknown> = { done: false };
      for (const l of out.split('\n')) {
        if (!l.startsWith('{')) continue;
        const o = JSON.parse(l);
        if (o.done) summary = o;
        else lines.push(o);
      }
      resolve({ lines, summary, stderr: err });
    });
  });
}

beforeAll(async () => {
  base = mkdtempSync('/var/tmp/corral-escape-');
  chmodSync(base, 0o755);
  why = buildProbe(join(base, 'bin'));
  if (why) return;
  // The package and the engine, where every identity can read them.
  const pkg = join(base, 'pkg');
  for (const f of ['dist', 'package.json', 'binding.cjs', 'corral-helper', 'python', ...readdirSync(root).filter((f) => f.endsWith('.node'))]) {
    cpSync(join(root, f), join(pkg, f), { recursive: true });
  }
  cpSync(join(root, 'node_modules', 'commander'), join(pkg, 'node_modules', 'commander'), { recursive: true });
  for (const f of ['engine.cjs', 'cases.cjs', 'open-cases.cjs']) cpSync(join(__dirname, f), join(base, 'engine', f));
  spawnSync('chmod', ['-R', 'a+rX', base]);
  const runs = await Promise.all(identities.map(async (who) => [who, await runEngine(who)] as const));
  for (const [who, r] of runs) {
    results.set(who, new Map(r.lines.map((o) => [`${o.id} ${o.mode}`, o])));
    summaries.set(who, { ...r.summary, stderr: r.stderr.slice(0, 2000) });
  }
}, 600_000);

afterAll(() => {
  if (base && existsSync(base)) rmSync(base, { recursive: true, force: true });
});

it('every open escape names a case and a start mode it has', () => {
  const cases = new Map((CASES as { id: string; modes?: string[] }[]).map((c) => [c.id, c]));
  for (const o of OPEN as { id: string; modes?: string[] }[]) {
    expect(cases.has(o.id), `open-cases.cjs names ${o.id}, which cases.cjs does not have`).toBe(true);
    for (const m of o.modes ?? []) expect(cases.get(o.id)?.modes ?? MODES, `${o.id}: mode ${m}`).toContain(m);
  }
});

for (const who of identities) {
  const chosen = select(CASES, OPEN, who, open);
  describe(`escape suite as ${who}${open ? ' (open escapes only)' : ''}`, () => {
    it('the probe builds and the engine finishes', (ctx) => {
      if (why) {
        if (requireAll) throw new Error(why);
        console.log(`escape suite skipped: ${why}`);
        return ctx.skip(`escape suite skipped: ${why}`);
      }
      const s = summaries.get(who);
      expect(s, JSON.stringify(s)).toMatchObject({ done: true, ran: chosen.length });
      expect(s?.fatal).toBeUndefined();
      expect(s?.victimAlive, 'a host process no sandbox may signal is gone').toBe(true);
    });
    for (const { c, mode } of chosen) {
      it(`${c.id} [${mode}] (${c.covers})`, (ctx) => {
        if (why) return ctx.skip(`escape suite skipped: ${why}`);
        const r = results.get(who)?.get(`${c.id} ${mode}`);
        expect(r, 'the engine reported nothing for this case').toBeDefined();
        if (r!.status === 'skipped') {
          if (requireAll) throw new Error(`prerequisite missing: ${r!.findings.join('; ')}`);
          console.log(`${c.id} [${mode}] skipped: ${r!.findings.join('; ')}`);
          return ctx.skip(`${c.id} [${mode}] skipped: ${r!.findings.join('; ')}`);
        }
        const detail = JSON.stringify({ findings: r!.findings, probe: r!.probe, refused: r!.refused, stderr: r!.stderr }, null, 1);
        expect(r!.status, detail).toBe('held');
      });
    }
  });
}
