// The published shape: packed main + platform packages install and run without cargo.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { root } from './helpers';

describe('npm pack', () => {
  it('installs into an empty project and runs from require, import and the bin without a Rust toolchain', () => {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'pack-check.mjs')], { encoding: 'utf8', timeout: 170_000 });
    expect(r.stdout, r.stderr).toMatch(/pack-check: ok/);
    expect(r.status).toBe(0);
  }, 180_000);
});
