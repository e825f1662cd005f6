// The isolation suite again, each command through a warm pool of its policy: the sandbox
// is prepared ahead (namespaces, mounts, cgroup, a restricted command process waiting) and
// the command handed over at acquire time, so this proves nothing was left out of that path.
import { isolationSuite } from './isolation.suite';
import { corral } from './helpers';

const pooled = (async (policy: Parameters<typeof corral.run>[0], argv: string[], options?: Parameters<typeof corral.run>[2]) => {
  const pool = new corral.Pool(policy, { size: 1, maxSize: 1 });
  try {
    return await pool.run(argv, options as never);
  } finally {
    await pool.close();
  }
}) as typeof corral.run;

isolationSuite(pooled, 'pool');
