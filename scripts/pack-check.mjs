#!/usr/bin/env node
// Proves the published shape works without a Rust toolchain: packs the main package and
// this platform's package (addon + helper) from the current build, installs both into an
// empty directory with cargo off PATH, then require()s and import()s corral and runs a
// sandboxed command each way. Prints what it did; exits non-zero on any failure.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const platform = process.arch === 'x64' ? 'linux-x64-gnu' : process.arch === 'arm64' ? 'linux-arm64-gnu' : null;
if (process.platform !== 'linux' || !platform) {
  console.log(`pack-check: skipped, no Linux package for ${process.platform}/${process.arch}`);
  process.exit(0);
}
const node = `corral.${platform}.node`;
for (const f of [node, 'corral-helper', 'dist/index.js']) {
  if (!existsSync(join(root, f))) {
    console.error(`pack-check: ${f} is missing; run \`npm install\` (or \`npm run build\`) first`);
    process.exit(1);
  }
}

const work = mkdtempSync(join(tmpdir(), 'corral-pack-'));
const npm = (args, cwd, env = process.env) => execFileSync('npm', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
try {
  // The platform package carries the addon and the helper, as the release workflow does.
  const pkgDir = join(root, 'npm', platform);
  copyFileSync(join(root, node), join(pkgDir, node));
  copyFileSync(join(root, 'corral-helper'), join(pkgDir, 'corral-helper'));
  chmodSync(join(pkgDir, 'corral-helper'), 0o755);
  const mainTgz = join(root, npm(['pack', '--ignore-scripts', '--silent', '--pack-destination', work], root).split('\n').pop());
  const platTgz = npm(['pack', '--ignore-scripts', '--silent', '--pack-destination', work], pkgDir).split('\n').pop();
  for (const f of [node, 'corral-helper']) rmSync(join(pkgDir, f));
  console.log(`pack-check: packed ${mainTgz.split('/').pop()} and ${platTgz}`);

  const app = join(work, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  // No Rust toolchain from here on: only system directories on PATH.
  const env = { ...process.env, PATH: '/usr/local/bin:/usr/bin:/bin' };
  if (spawnSync('cargo', ['--version'], { env }).status === 0) {
    console.error('pack-check: cargo is still reachable with PATH=/usr/local/bin:/usr/bin:/bin; cannot prove a toolchain-free install here');
    process.exit(1);
  }
  npm(['install', '--no-audit', '--no-fund', '--omit=dev', join(work, mainTgz.split('/').pop()), join(work, platTgz)], app, env);
  const helper = join(app, 'node_modules', `corral-${platform}`, 'corral-helper');
  if (!(readFileSync(helper).length > 0)) throw new Error('helper missing from the installed platform package');

  const cjs = spawnSync(process.execPath, ['-e', "require('corral').run({}, ['sh','-c','echo from-require']).then(r => process.stdout.write(r.stdout))"], { cwd: app, env, encoding: 'utf8' });
  const esm = spawnSync(process.execPath, ['--input-type=module', '-e', "import { run } from 'corral'; const r = await run({}, ['sh','-c','echo from-import']); process.stdout.write(r.stdout)"], { cwd: app, env, encoding: 'utf8' });
  const bin = spawnSync(join(app, 'node_modules', '.bin', 'corral'), ['run', '--', 'echo', 'from-cli'], { cwd: app, env, encoding: 'utf8' });
  const ok = cjs.stdout === 'from-require\n' && esm.stdout === 'from-import\n' && bin.stdout === 'from-cli\n';
  console.log(`pack-check: require → ${JSON.stringify(cjs.stdout)} ${cjs.stderr}`);
  console.log(`pack-check: import  → ${JSON.stringify(esm.stdout)} ${esm.stderr}`);
  console.log(`pack-check: bin     → ${JSON.stringify(bin.stdout)} ${bin.stderr}`);
  if (!ok) process.exit(1);
  console.log('pack-check: ok, installed and ran without cargo');
} finally {
  rmSync(work, { recursive: true, force: true });
}
