// spawn() streams output as it comes; an AbortSignal ends a run that takes too long.
import { spawn, run, CorralError } from 'corral';

const p = spawn({}, ['sh', '-c', 'for i in 1 2 3; do echo "line $i"; done']);
for await (const chunk of p.stdout) process.stdout.write(`streamed: ${chunk}`);
console.log(`exit ${(await p.wait()).exitCode}`);

try {
  await run({}, ['sleep', '30'], { signal: AbortSignal.timeout(200) });
} catch (e) {
  if (e instanceof CorralError && e.code === 'ABORTED') console.log(`aborted: ${e.cause?.name}`);
}
