// Captured output: a default cap, truncation reported in the result, and decoding that
// never loses the result to a string Node cannot hold.
import { describe, expect, it } from 'vitest';
import { corral } from './helpers';

const { run, Pool } = corral;
const { decode, DEFAULT_MAX_OUTPUT_BYTES } = require('../dist/output.js') as typeof import('../src/output');

describe('captured output', () => {
  it('is capped at 100 MiB per stream by default, and the result says so', async () => {
    const r = await run({}, ['sh', '-c', 'head -c 110M /dev/zero; echo done >&2'], { encoding: 'buffer' });
    expect(DEFAULT_MAX_OUTPUT_BYTES).toBe(100 * 1024 * 1024);
    expect(r.stdout.length).toBe(DEFAULT_MAX_OUTPUT_BYTES);
    expect(r.stderr.toString()).toBe('done\n');
    expect(r.outputTruncated).toBe(true);
    expect(r.limits.maxOutputBytes).toBe(DEFAULT_MAX_OUTPUT_BYTES);
    expect(r.exitCode).toBe(0);
  });

  it('keeps a cap the policy sets', async () => {
    const r = await run({ limits: { maxOutputBytes: '1k' } }, ['sh', '-c', 'head -c 5000 /dev/zero']);
    expect(r.stdout.length).toBe(1024);
    expect(r.outputTruncated).toBe(true);
  });

  it('caps pooled and abortable runs the same way', async () => {
    const pool = new Pool({}, { size: 1 });
    try {
      expect((await pool.run(['true'])).limits.maxOutputBytes).toBe(DEFAULT_MAX_OUTPUT_BYTES);
    } finally {
      await pool.close();
    }
    const r = await run({ limits: { maxOutputBytes: 10 } }, ['sh', '-c', 'echo 0123456789abcdef'], { signal: new AbortController().signal });
    expect(r.stdout).toBe('0123456789');
    expect(r.outputTruncated).toBe(true);
  });

  it('decodes at most what a string can hold, and says it cut the rest', () => {
    // The longest string is 2^29-24 characters; a smaller limit stands in for it here.
    expect(decode(Buffer.from('hello'), 'utf8', 3)).toEqual({ text: 'hel', truncated: true });
    expect(decode(Buffer.from('hello'), 'hex', 4)).toEqual({ text: '6865', truncated: true });
    expect(decode(Buffer.from('hello'), 'base64', 4)).toEqual({ text: 'aGVs', truncated: true });
    expect(decode(Buffer.from('hi'), 'utf8', 3)).toEqual({ text: 'hi', truncated: false });
  });
});
