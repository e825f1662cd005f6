#!/usr/bin/env node
// Checks the package as npm would publish it: publint on the package, arethetypeswrong on
// the packed tarball (packed without running the build scripts, from the current build).
// Prints what each said; exits non-zero if either found a problem.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);
const work = mkdtempSync(join(tmpdir(), 'corral-package-'));
let failed = false;
try {
  const publint = spawnSync(bin('publint'), ['--strict'], { cwd: root, encoding: 'utf8' });
  process.stdout.write(`publint:\n${publint.stdout}${publint.stderr}`);
  failed ||= publint.status !== 0;
  const tgz = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', work], { cwd: root, encoding: 'utf8' }).trim().split('\n').pop();
  const attw = spawnSync(bin('attw'), [join(work, tgz), '--format', 'table-flipped', '--no-color'], { cwd: root, encoding: 'utf8' });
  process.stdout.write(`arethetypeswrong:\n${attw.stdout}${attw.stderr}`);
  failed ||= attw.status !== 0;
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(failed ? 'check-package: problems found' : 'check-package: ok');
process.exit(failed ? 1 : 0);
