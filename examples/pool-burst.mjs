// A warm pool takes a burst of 40 jobs: 4 run at once, the rest queue for warm sandboxes.
// (In TypeScript, `await using pool = new Pool(...)` closes it at the end of the scope.)
import { Pool } from 'corral';

const pool = new Pool({ timeout: '10s' }, { size: 4, concurrency: 4 });
try {
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => pool.run(['sh', '-c', `echo $((${i} * ${i}))`])));
  const sum = results.reduce((n, r) => n + Number(r.stdout), 0);
  const s = pool.stats();
  console.log(`sum ${sum}; created ${s.created}, hits ${s.hits}, waits ${s.waits}, misses ${s.misses}, queued ${s.queuedTotal}`);
} finally {
  await pool.close();
}
