// run() a command with one writable directory; look at the result; catch a typed error.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, CorralError } from 'corral';

const dir = mkdtempSync(join(process.env.CORRAL_EXAMPLE_DIR ?? tmpdir(), 'corral-example-'));
try {
  const r = await run({ fs: { write: [dir] }, timeout: '10s' }, ['sh', '-c', `echo hello > ${dir}/greeting; uname -n`]);
  console.log(`exit ${r.exitCode}, hostname ${r.stdout.trim()}, wrote ${readFileSync(join(dir, 'greeting'), 'utf8').trim()}`);

  try {
    await run({ limits: { memory: 'lots' } }, ['true']);
  } catch (e) {
    if (e instanceof CorralError) console.log(`refused: ${e.code} ${e.field}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
