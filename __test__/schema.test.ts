// The policy's JSON Schema: generated from the native policy model (a Rust test keeps the
// committed file current), shipped in the package, accepted as "$schema" in policy files,
// and in step with how the CLI merges policies.
import Ajv from 'ajv';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { corral, root, runCli } from './helpers';

const schema = JSON.parse(readFileSync(join(root, 'schema', 'policy.schema.json'), 'utf8'));
const ajv = new Ajv({ allErrors: true, strict: true });
for (const f of ['uint16', 'uint64', 'double']) ajv.addFormat(f, true);
const validate = ajv.compile(schema);
const dir = mkdtempSync(join(tmpdir(), 'corral-schema-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the policy schema', () => {
  it('validates a policy file that names it, and corral runs that file', () => {
    const policy = {
      $schema: './node_modules/corral/schema/policy.schema.json',
      fs: { read: ['/usr'], deny: ['~/.ssh'], writeMode: 'direct' },
      network: { allow: ['example.test:443'], deny: ['bad.example.test'] },
      env: { CI: '1' },
      limits: { memory: '256M', pids: 64, openFiles: 256, cpuTime: '10s', maxOutputBytes: 1 << 20 },
      timeout: '30s',
      seccomp: { profile: 'default', deny: ['acct'] },
      hostname: 'from-file',
    };
    expect(validate(policy), JSON.stringify(validate.errors)).toBe(true);
    const file = join(dir, 'policy.json');
    writeFileSync(file, JSON.stringify(policy));
    const r = runCli(['run', '--policy', file, '--', 'sh', '-c', 'hostname; echo $CI']);
    expect(r).toMatchObject({ stdout: 'from-file\n1\n', status: 0 });
    expect(corral.plan(policy).sandbox.hostname).toBe('from-file');
  });

  it.each([
    [{ fs: { read: '/usr' } }],
    [{ bogus: 1 }],
    [{ network: 'internet' }],
    [{ limits: { memory: 'lots' } }],
    [{ limits: { pids: 1 } }],
    [{ timeout: '5 weeks' }],
    [{ seccomp: 'loose' }],
    [{ inheritEnv: 'yes' }],
  ])('refuses %j, as corral does', (policy) => {
    expect(validate(policy)).toBe(false);
    expect(() => corral.plan(policy as never)).toThrow(expect.objectContaining({ code: 'POLICY_INVALID' }));
  });

  it('accepts the spellings of sizes and durations corral accepts', () => {
    for (const memory of [4096, '4096', '64k', '256M', '256MB', '256mib', '1.5G', ' 2T ']) expect(validate({ limits: { memory } }), String(memory)).toBe(true);
    for (const timeout of [250, '250', '250ms', '5s', '1.5s', '2m', '90min', '1h']) expect(validate({ timeout }), String(timeout)).toBe(true);
  });

  it('names every field the CLI knows how to merge, and no other', () => {
    const { POLICY_SHAPE } = require('../dist/merge.js') as typeof import('../src/merge');
    const keys = (o: object) => Object.keys(o).sort();
    expect(keys(POLICY_SHAPE)).toEqual(keys(schema.properties));
    expect(keys(POLICY_SHAPE.fs as object)).toEqual(keys(schema.definitions.FsPolicy.properties));
    expect(keys(POLICY_SHAPE.limits as object)).toEqual(keys(schema.definitions.Limits.properties));
  });

  it('ships in the package', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(pkg.files).toContain('schema');
    expect(pkg.exports['./schema/policy.schema.json']).toBe('./schema/policy.schema.json');
  });
});
