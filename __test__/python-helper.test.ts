import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { prerequisite, root } from './helpers';

// python/test_corral_fork.py plays corral's side of the fork protocol against the shipped
// Python helper (no sandbox needed), so a protocol break shows up here by name.
const probe = spawnSync('python3', ['-c', 'import pytest'], { stdio: 'ignore' });
const why = probe.error ? 'python3 is not installed' : probe.status !== 0 ? 'pytest is not installed for python3' : null;
const ready = prerequisite('pytest for the Python fork helper', why);

it.skipIf(!ready)('the Python fork helper speaks the protocol (pytest)', () => {
  const r = spawnSync('python3', ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', join(root, 'python', 'test_corral_fork.py')], {
    encoding: 'utf8',
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    timeout: 120_000,
  });
  expect(r.status, r.stdout + r.stderr).toBe(0);
}, 130_000);
