// Runs every case of cases.cjs in each of its start modes and prints the verdicts as JSON.
// Runs in: a plain Node process, as the test user or (started by paths.test.ts through
// setpriv) as uid 65534. argv: <package dir> <scratch dir> <identity>.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { CASES, MODES } = require('./cases.cjs');

const [pkg, scratch, identity] = process.argv.slice(2);
const corral = require(pkg);
const WAIT = 'waiting-for-go';

/** The probe script, wrapped: say it waits, wait for the host's go, then attack. */
const wrap = (script, go) => `echo ${WAIT}; i=0; while [ ! -e ${go} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; ${script}`;

function until(stream, text) {
  return new Promise((resolve) => {
    let buf = '';
    const on = (c) => {
      buf += c.toString();
      if (buf.includes(text)) {
        stream.off('data', on);
        resolve();
      }
    };
    stream.on('data', on);
    stream.on('end', resolve);
  });
}

const collect = (stream) =>
  new Promise((resolve) => {
    const parts = [];
    stream.on('data', (c) => parts.push(c));
    stream.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
  });

/** A sandbox running `argv` under `policy` in start mode `mode`; `act` runs once it waits. */
async function start(mode, policy, script, act) {
  const argv = ['/bin/sh', '-c', script];
  if (mode === 'pool') {
    const pool = new corral.Pool(policy, { size: 1, maxSize: 1 });
    try {
      for (let i = 0; i < 400 && pool.stats().ready < 1; i++) await new Promise((r) => setTimeout(r, 10));
      await act();
      return await pool.run(argv);
    } finally {
      await pool.close();
    }
  }
  if (mode === 'fork') {
    // A Python template whose clone runs the script (the template is built first).
    const py = `import corral_fork, os, sys\nc = corral_fork.serve()\nif c is None: sys.exit(0)\nos.execv("/bin/sh", ["sh", "-c", ${JSON.stringify(script)}])`;
    const t = await corral.template(policy, ['python3', '-c', py]);
    try {
      const [clone] = await t.fork(1);
      const out = collect(clone.stdout);
      const err = collect(clone.stderr);
      await until(clone.stdout, WAIT);
      await act();
      const exit = await clone.wait();
      return { stdout: await out, stderr: await err, exitCode: exit.exitCode, caveats: corral.plan(policy).caveats };
    } finally {
      await t.close();
    }
  }
  if (mode === 'overlay' || mode === 'ephemeral') policy = { ...policy, fs: { ...(policy.fs ?? {}), writeMode: mode } };
  const p = corral.spawn(policy, argv, { stdin: 'ignore' });
  const out = collect(p.stdout);
  const err = collect(p.stderr);
  await until(p.stdout, WAIT);
  await act();
  const r = await p.wait();
  return { ...r, stdout: await out, stderr: await err };
}

function harness(dir, token) {
  const p = (rel) => path.join(dir, rel);
  return {
    dir,
    token,
    p,
    file(rel, content, mode) {
      fs.mkdirSync(path.dirname(p(rel)), { recursive: true });
      fs.writeFileSync(p(rel), content);
      if (mode) fs.chmodSync(p(rel), mode);
      return p(rel);
    },
    mkdir(rel) {
      fs.mkdirSync(p(rel), { recursive: true });
      return p(rel);
    },
    symlink(to, rel) {
      fs.mkdirSync(path.dirname(p(rel)), { recursive: true });
      fs.symlinkSync(to, p(rel));
      return p(rel);
    },
  };
}

async function trial(c, mode, n) {
  const dir = path.join(scratch, `${n}-${c.id}-${mode}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  const t = harness(dir, `${process.pid}x${n}`);
  const s = await c.setup(t, corral);
  // Only a case that acts while the command runs makes it wait, for a file in a directory
  // it can see (`goDir`).
  const go = s.later ? path.join(s.goDir, `.go-${t.token}`) : '';
  const act = async () => {
    if (s.later) {
      await s.later(corral);
      fs.writeFileSync(go, '');
    }
  };
  const script = s.later ? wrap(s.script ?? 'true', go) : `echo ${WAIT}; ${s.script ?? 'true'}`;
  let r;
  try {
    r = await start(mode, s.policy, script, act);
  } catch (e) {
    if (s.refused) return s.refused(e) ? '' : `refused, but not as expected: ${e.code} ${e.field} ${e.message} (${e.hint})`;
    return `the run failed: ${e.code} ${e.message}`;
  }
  if (s.refused) return `ran instead of being refused (exit ${r.exitCode}: ${r.stdout} ${r.stderr})`;
  r.stdout = r.stdout.replace(`${WAIT}\n`, '');
  let verdict = [s.check?.(r), s.host?.()].filter(Boolean).join('; ');
  // What was written to an overlay reaches the host only now: the host must hold again.
  if (!verdict && r.changes) {
    await r.changes.commit();
    verdict = s.host?.() ?? '';
    if (verdict) verdict = `after commit(): ${verdict}`;
  }
  return verdict;
}

(async () => {
  const results = [];
  let n = 0;
  for (const c of CASES) {
    if (c.identities && !c.identities.includes(identity)) continue;
    for (const mode of c.modes ?? MODES) {
      let verdict;
      try {
        verdict = await trial(c, mode, n++);
      } catch (e) {
        verdict = `the trial itself failed: ${e.stack}`;
      }
      results.push({ id: c.id, mode, verdict });
    }
  }
  process.stdout.write(JSON.stringify(results));
})();
