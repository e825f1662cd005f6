// The untrusted preset: a script you did not write gets its own directory and nothing else.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { presets, run } from 'corral';

const dir = mkdtempSync(join(process.env.CORRAL_EXAMPLE_DIR ?? tmpdir(), 'corral-untrusted-'));
try {
  writeFileSync(join(dir, 'script.sh'), 'echo "result: $((6 * 7))" > out.txt\ncat /etc/shadow 2>/dev/null | wc -c\nls ~ 2>/dev/null | wc -l\n');
  const r = await run(presets.untrusted({ dir }), ['sh', 'script.sh']);
  const [shadow, home] = r.stdout.trim().split('\n');
  console.log(`exit ${r.exitCode}; /etc/shadow showed ${shadow} bytes; home entries ${home}; network: none; limits: ${r.limits.cgroup?.memory ?? r.limits.rlimits.addressSpace} bytes`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
