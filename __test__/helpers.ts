import { execFileSync, spawnSync } from 'node:child_process';
import { it } from 'vitest';
import { mkdtempSync, rmSync, chmodSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The built package, as users load it (CommonJS build). */
export const corral = require('../dist/index.js') as typeof import('../src/index');
export const root = join(__dirname, '..');
export const cli = join(root, 'dist', 'cli.js');

/**
 * A host directory outside /tmp (the sandbox's /tmp is private, so host /tmp paths would
 * be invisible anyway and prove nothing).
 */
export function hostDir(prefix = 'corral-test-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join('/var/tmp', prefix));
  chmodSync(path, 0o755);
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * The corral helper started by the process `parent`, found by the parent pid it carries in
 * its environment (its command line names neither its path nor the parent).
 */
export function helpersOf(parent: number): string[] {
  const found = readdirSync('/proc').filter((p) => {
    try {
      return /^\d+$/.test(p) && readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`CORRAL_HELPER_PARENT=${parent}`);
    } catch {
      return false;
    }
  });
  // The helper's own children (sandbox inits, carve-out wardens) carry its environment too.
  const ppid = (p: string) => {
    try {
      return readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1];
    } catch {
      return '';
    }
  };
  return found.filter((p) => !found.includes(ppid(p)));
}

/** The helper started by `parent` and every process it started: the sandboxes' inits. */
export function helperProcesses(parent: number): string[] {
  const children = (p: string): string[] => {
    try {
      return readdirSync(`/proc/${p}/task`).flatMap((t) => readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
    } catch {
      return [];
    }
  };
  return helpersOf(parent).flatMap((h) => [h, ...children(h)]);
}

/** Host processes whose command line starts with `prefix`. */
export function hostProcesses(prefix: string): string[] {
  const r = spawnSync('pgrep', ['-af', prefix], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.replace(/^\d+ /, '').startsWith(prefix));
}

export const isRoot = process.getuid?.() === 0;

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs the CLI without blocking this process (for tests whose servers live here). */
export function runCliAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const { execFile } = require('node:child_process') as typeof import('node:child_process');
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: root }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Runs the CLI and returns its status and output. */
export function runCli(args: string[], opts: { input?: string; cwd?: string } = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input: opts.input, cwd: opts.cwd ?? root });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** CI sets CORRAL_REQUIRE_ALL=1: every test must run there. */
export const requireAll = process.env.CORRAL_REQUIRE_ALL === '1';

/**
 * Whether the tests that need `what` can run here; `missing` says why not (null: they can).
 * Locally a missing prerequisite skips them with the reason printed; under
 * CORRAL_REQUIRE_ALL=1 it is a failing test instead. Use the answer with `skipIf`.
 */
export function prerequisite(what: string, missing: string | null): boolean {
  if (missing === null) return true;
  if (requireAll) {
    it(`has its prerequisite: ${what}`, () => {
      throw new Error(`${what}: ${missing} (CORRAL_REQUIRE_ALL=1 makes a missing prerequisite a failure)`);
    });
  } else {
    console.log(`skipped, ${what}: ${missing}`);
  }
  return false;
}
