// The ci preset: a project builds and tests in its workspace; secrets stay hidden.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mergePolicies, presets, run } from 'corral';

const workspace = mkdtempSync(join(process.env.CORRAL_EXAMPLE_DIR ?? tmpdir(), 'corral-ci-'));
try {
  writeFileSync(join(workspace, 'Makefile'), 'all:\n\tprintf "#!/bin/sh\\necho tests passed\\n" > check && chmod +x check\ntest: all\n\t./check\n');
  const policy = mergePolicies(presets.ci({ dir: workspace }), { timeout: '2m' });
  const r = await run(policy, ['sh', '-c', 'make -s test && echo "bytes of ~/.ssh visible: $(cat ~/.ssh/* 2>/dev/null | wc -c)"'], { reject: true });
  console.log(r.stdout.trim());
} finally {
  rmSync(workspace, { recursive: true, force: true });
}
