#!/usr/bin/env node
// `npm run bench`: medians from one run, side by side, as ratios against the floor and
// the peers. Never part of the test suite. Peers that are not installed are skipped with
// the reason printed; install them with `apt-get install bubblewrap firejail runsc
// ripgrep socat` (srt also needs `npm install` access, done here on first use).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const iterations = Number(process.env.BENCH_ITERATIONS ?? 300);
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const skipped = [];

// 1. Rust-side cases: the floor, corral from Rust, and command-line peers, round-robin.
console.log('building the Rust timing harness…');
for (const example of ['bench', 'fork_bench']) {
  execFileSync('cargo', ['build', '--release', '--quiet', '--example', example, '-p', 'corral-pool'], { cwd: root, stdio: 'inherit' });
}
const external = [];
const peer = (name, cmd, argv, check = () => '') => {
  if (!has(cmd)) return skipped.push(`${name}: \`${cmd}\` is not installed`);
  const why = check();
  if (why) return skipped.push(`${name}: ${why}`);
  external.push('--external', `${name}::${argv}`);
};
peer('bwrap', 'bwrap', 'bwrap --ro-bind / / --dev /dev --proc /proc --unshare-all --new-session /bin/true', () =>
  spawnSync('bwrap', ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--unshare-all', '/bin/true']).status === 0 ? '' : 'bwrap cannot create namespaces here');
peer('firejail', 'firejail', 'firejail --quiet --noprofile /bin/true', () =>
  spawnSync('firejail', ['--quiet', '--noprofile', '/bin/true']).status === 0 ? '' : 'firejail refuses to run here');
peer('runsc', 'runsc', 'runsc --network=none do /bin/true', () =>
  spawnSync('runsc', ['--network=none', 'do', '/bin/true']).status === 0 ? '' : 'runsc do fails here');
// corral cases from Rust. P1 is `corral`: every layer (all namespaces, mount view,
// Landlock, seccomp, rlimits). The others show what single features cost on top of it.
const scratch = join(root, '.bench-tmp', 'fs');
mkdirSync(join(scratch, 'proj', '.git'), { recursive: true });
mkdirSync(join(scratch, 'home', '.ssh'), { recursive: true });
const limits = { openFiles: 1024, fileSize: '1G', memory: '8G' };
const corralCases = {
  corral: { limits },
  'corral-hostnet': { network: 'host', limits },
  'corral-cgroup': { limits: { ...limits, memory: '1G', pids: 256, cpus: 1 } },
  'corral-fs': {
    limits,
    fs: {
      read: [join(scratch, 'home')],
      write: [join(scratch, 'proj')],
      deny: [join(scratch, 'home', '.ssh')],
      protect: [join(scratch, 'proj', '.git', 'hooks'), join(scratch, 'proj', '.git', 'config')],
      volumes: [{ source: join(scratch, 'home'), target: '/data', readOnly: true }],
    },
  },
  'corral-ephemeral': { limits, fs: { write: [join(scratch, 'proj')], writeMode: 'ephemeral' } },
  'corral-overlay': { limits, fs: { write: [join(scratch, 'proj')], writeMode: 'overlay' } },
};
for (const [name, p] of Object.entries(corralCases)) external.push('--corral', `${name}::${JSON.stringify(p)}`);
// P2: the same policy from a warm pool (P4 and P7 measure the pool too).
external.push('--pool', `corral-pool::${JSON.stringify({ limits })}`);
const rustIterations = String(Math.max(20, Math.floor(iterations / 3)));
const rust = JSON.parse(
  execFileSync(join(root, 'target', 'release', 'examples', 'bench'), ['--iterations', rustIterations, ...external], {
    cwd: root,
    env: { ...process.env, CORRAL_HELPER: join(root, 'corral-helper') },
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  }),
);
const ms = (us) => median(us) / 1000;
const lat = (name) => ms(rust.latency[name]);

// 1b. P5: copy-on-write fork ×1000 of 50 MB templates (native and Python) and their
// unsandboxed floors, in one run.
const forkArgs = ['--clones', '1000', '--rounds', '5'];
if (has('python3')) forkArgs.push('--python', join(root, 'bench', 'fork_template.py'), '--python-lib', join(root, 'python'));
else skipped.push('python fork rows: python3 is not installed');
const fork = JSON.parse(
  execFileSync(join(root, 'target', 'release', 'examples', 'fork_bench'), forkArgs, {
    cwd: root,
    env: { ...process.env, CORRAL_HELPER: join(root, 'corral-helper') },
    encoding: 'utf8',
  }),
);

// 2. Node-side cases: Node's own spawn round trip and corral's run(), interleaved.
const corral = require(root);
const policy = { limits: { openFiles: 1024, fileSize: '1G', memory: '8G' } };
const nodeSpawn = () => new Promise((resolve, reject) => {
  const c = spawn('/bin/true', { stdio: 'ignore' });
  c.on('error', reject);
  c.on('exit', resolve);
});
const pool = new corral.Pool(policy, { size: 4 });
await new Promise((r) => setTimeout(r, 500)); // let it fill
const nodeCases = {
  'node spawn': nodeSpawn,
  'node run()': () => corral.run(policy, ['/bin/true']),
  'node pool.run()': () => pool.run(['/bin/true']),
};
const nodeSamples = Object.fromEntries(Object.keys(nodeCases).map((k) => [k, []]));
for (let i = 0; i < iterations + 20; i++) {
  for (const [name, f] of Object.entries(nodeCases)) {
    const t = performance.now();
    await f();
    if (i >= 20) nodeSamples[name].push(performance.now() - t);
  }
}
await pool.close();

// 3. @anthropic-ai/sandbox-runtime (srt): wrapWithSandbox + spawn per command, as its users do.
let srt = null;
const srtWhy = !has('bwrap') ? 'needs bwrap' : !has('rg') ? 'needs ripgrep (rg)' : !has('socat') ? 'needs socat' : '';
if (srtWhy) skipped.push(`srt: ${srtWhy}`);
else {
  const dir = join(root, '.bench-tmp', 'peers');
  if (!existsSync(join(dir, 'node_modules', '@anthropic-ai', 'sandbox-runtime'))) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"name":"peers","private":true}');
    const r = spawnSync('npm', ['install', '--silent', '--no-audit', '--no-fund', '@anthropic-ai/sandbox-runtime'], { cwd: dir, stdio: 'inherit' });
    if (r.status !== 0) skipped.push('srt: npm install @anthropic-ai/sandbox-runtime failed');
  }
  try {
    const { SandboxManager } = await import(join(dir, 'node_modules', '@anthropic-ai', 'sandbox-runtime', 'dist', 'index.js'));
    const t0 = performance.now();
    await SandboxManager.initialize({ network: { allowedDomains: [], deniedDomains: [] }, filesystem: { denyRead: [], allowWrite: [], denyWrite: [] } });
    const init = performance.now() - t0;
    const samples = [];
    for (let i = 0; i < 40; i++) {
      const t = performance.now();
      const cmd = await SandboxManager.wrapWithSandbox('/bin/true');
      await new Promise((res, rej) => spawn(cmd, { shell: true, stdio: 'ignore' }).on('exit', res).on('error', rej));
      if (i >= 5) samples.push(performance.now() - t);
    }
    await SandboxManager.reset();
    srt = { median: median(samples), init };
  } catch (e) {
    skipped.push(`srt: ${e.message.split('\n')[0]}`);
  }
}

// 3b. P6: a 100 MB download from a loopback server, through the allow-list proxy versus
// direct. The server lives in this process, so everything here is awaited, never blocking.
const { createServer } = await import('node:http');
const chunk = Buffer.alloc(1 << 20, 120);
const server = createServer((_, res) => {
  let left = 100;
  const write = () => {
    while (left > 0) {
      left--;
      if (!res.write(chunk)) return res.once('drain', write);
    }
    res.end();
  };
  write();
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const dlPort = server.address().port;
const curlArgs = (url) => ['-s', '-o', '/dev/null', '-w', '%{speed_download}', url];
const directSpeed = () =>
  new Promise((resolve, reject) => {
    let out = '';
    const c = spawn('curl', curlArgs(`http://127.0.0.1:${dlPort}/`), { stdio: ['ignore', 'pipe', 'ignore'] });
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('exit', () => resolve(Number(out)));
  });
const proxyPolicy = { network: { allow: ['download.test'], hosts: { 'download.test': '127.0.0.1' } } };
const proxiedSpeed = async (extra = []) =>
  Number((await corral.run(proxyPolicy, ['curl', ...extra, ...curlArgs(`http://download.test:${dlPort}/`)])).stdout);
const speeds = { direct: [], proxied: [], tunnel: [] };
for (let i = 0; i < 7; i++) {
  speeds.direct.push(await directSpeed());
  speeds.proxied.push(await proxiedSpeed());
  speeds.tunnel.push(await proxiedSpeed(['--proxytunnel'])); // CONNECT, as for HTTPS
}
server.close();
const mbps = (v) => median(v) / (1 << 20);

// 4. The table.
const floor = lat('floor');
const nodeFloor = median(nodeSamples['node spawn']);
const rows = [
  ['floor: fork+exec /bin/true (from Rust)', floor, 1],
  ['corral cold /bin/true from Rust (all namespaces, mount view, Landlock, seccomp, rlimits)', lat('corral')],
  ['  same, sharing the host network (no new netns)', lat('corral-hostnet')],
  [`  same + a cgroup (memory, pids, cpu)${corral.check().cgroup.writable ? '' : ' — not available here: rlimits'}`, lat('corral-cgroup')],
  ['  same + fs: read, write, deny, 2 protect (1 placeholder), volume', lat('corral-fs')],
  ['  same + writeMode ephemeral (overlays on /usr, /etc, the checkout)', lat('corral-ephemeral')],
  ['  same + writeMode overlay (captured layer handed to the caller)', lat('corral-overlay')],
  ['corral warm pool acquire + exec /bin/true from Rust', lat('corral-pool')],
  ...['bwrap', 'firejail', 'runsc'].filter((p) => rust.latency[p]).map((p) => [`${p}${p === 'bwrap' ? ' --unshare-all' : ''} /bin/true`, lat(p)]),
  ['Node child_process.spawn(/bin/true) round trip', nodeFloor],
  ['Node await run(policy, [/bin/true]) (cold)', median(nodeSamples['node run()'])],
  ['Node await pool.run([/bin/true]) (warm pool)', median(nodeSamples['node pool.run()'])],
  ...(srt ? [[`srt wrapWithSandbox + spawn (init ${srt.init.toFixed(0)} ms once)`, srt.median]] : []),
];
const width = Math.max(...rows.map((r) => r[0].length));
console.log(`\ncorral bench — ${new Date().toISOString()} — ${iterations} Node / ${rustIterations} Rust samples per case, medians\n`);
console.log(`${'case'.padEnd(width)}  ${'median'.padStart(9)}  ${'× floor'.padStart(8)}  ${'× node spawn'.padStart(12)}`);
for (const [name, v] of rows) {
  console.log(`${name.padEnd(width)}  ${(v.toFixed(3) + ' ms').padStart(9)}  ${(v / floor).toFixed(2).padStart(7)}×  ${(v / nodeFloor).toFixed(2).padStart(11)}×`);
}
const pct = (v) => ((100 * median(v)) / median(speeds.direct)).toFixed(0);
console.log(`\nP6 100 MB loopback download (curl), median of 7: direct ${mbps(speeds.direct).toFixed(0)} MB/s; through the allow-list proxy ${mbps(speeds.proxied).toFixed(0)} MB/s = ${pct(speeds.proxied)}% (plain HTTP), ${mbps(speeds.tunnel).toFixed(0)} MB/s = ${pct(speeds.tunnel)}% (CONNECT) of direct (target ≥ 80%)`);
const tp = rust.throughput;
console.log(`\nP4 throughput, /bin/true with 8 in flight: unsandboxed ${tp.floor.toFixed(0)}/s, corral cold ${tp.corral.toFixed(0)}/s (${((100 * tp.corral) / tp.floor).toFixed(0)}%), warm pool ${tp['corral-pool'].toFixed(0)}/s (${((100 * tp['corral-pool']) / tp.floor).toFixed(0)}%)`);
const mb = (b) => (b / (1 << 20)).toFixed(1);
console.log(`P7 idle pooled sandbox (${rust.idle.sandboxes} ready): PSS ${mb(rust.idle.pssPerSandbox)} MB each; system-wide MemAvailable drop ${mb(rust.idle.systemPerSandbox)} MB each`);
const ft = (name) => median(fork.times[name]) / 1000;
console.log(`\nP5 copy-on-write fork ×${fork.clones} of a 50 MB template, first request until every clone exited (median of ${fork.times.native.length}):`);
const forkRows = [
  ['native (Rust closure) template through corral', ft('native'), ft('native-floor')],
  ['  floor: bare fork loop of the same process, unsandboxed', ft('native-floor'), ft('native-floor')],
  ...(fork.times.python
    ? [
        ['Python template through corral (corral_fork.serve)', ft('python'), ft('python-floor')],
        ['  floor: plain os.fork loop of the same script, unsandboxed', ft('python-floor'), ft('python-floor')],
      ]
    : []),
];
const fw = Math.max(...forkRows.map((r) => r[0].length));
for (const [name, v, base] of forkRows) console.log(`  ${name.padEnd(fw)}  ${(v.toFixed(0) + ' ms').padStart(8)}  ${(v / base).toFixed(2)}× its floor`);
for (const [kind, m] of Object.entries(fork.memory)) {
  console.log(`  memory, ${kind}: template ${mb(m.template)} MB alone; with ${m.processes - 2} clones alive ${mb(m.total)} MB in all = ${(m.total / m.template).toFixed(2)}× (${((m.total - m.template) / (m.processes - 2) / 1024).toFixed(0)} KB per clone)`);
}
const bw = rust.latency.bwrap ? lat('bwrap') : null;
const nodePool = median(nodeSamples['node pool.run()']);
console.log('\ntargets (SPEC P1–P5, P7):');
console.log(`  P1 corral from Rust ≤ 2× floor: ${(lat('corral') / floor).toFixed(2)}×${bw ? `; ≥ 3× faster than bwrap: ${(bw / lat('corral')).toFixed(2)}×` : ''}`);
console.log(`  P2 warm pool acquire+exec ≤ 1.3× floor: ${(lat('corral-pool') / floor).toFixed(2)}×`);
console.log(`  P3 cold run() ≤ 2× Node spawn: ${(median(nodeSamples['node run()']) / nodeFloor).toFixed(2)}×; pool.run() ≤ 1.0× Node spawn: ${(nodePool / nodeFloor).toFixed(2)}×`);
console.log(`  P4 throughput ≥ 50% of unsandboxed: cold ${((100 * tp.corral) / tp.floor).toFixed(0)}%, pool ${((100 * tp['corral-pool']) / tp.floor).toFixed(0)}%`);
console.log(`  P5 native fork ×1000 ≤ 250 ms: ${ft('native').toFixed(0)} ms${fork.times.python ? `; Python ≤ 1.2× os.fork loop: ${(ft('python') / ft('python-floor')).toFixed(2)}×` : ''}; memory ≤ 1.5× template: ${Object.entries(fork.memory).map(([k, m]) => `${k} ${(m.total / m.template).toFixed(2)}×`).join(', ')}`);
console.log(`  P7 idle pooled sandbox ≤ 2 MB: ${mb(rust.idle.pssPerSandbox)} MB (PSS)`);
for (const s of skipped) console.log(`skipped ${s}`);
process.exit(0);
