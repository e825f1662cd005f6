// The escape suite's engine: host-side witnesses, the ways a command starts, and the loop
// that runs every case through them. Runs in: a plain Node process (escape.test.ts starts
// one as the test user and one as uid 65534 through setpriv), so it is CommonJS without a
// build step.
//
//   node engine.cjs --pkg DIR --probe FILE --scratch DIR [--open] [--only ID,ID]
//
// prints one JSON line per (case, mode) result, then {"done":true,…}. A result's status is
// `held` (no witness recorded anything and the probe saw nothing), `escaped` (findings say
// what got out) or `error` (the case could not be judged: it did not run as built).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const dgram = require('node:dgram');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');

/** Every way a command can start, in the order results are reported. */
const MODES = ['cold', 'pool', 'fork', 'overlay', 'ephemeral', 'allowlist'];
/** Modes that capture or discard writes: the probe's own view of a write says nothing. */
const CAPTURING = new Set(['overlay', 'ephemeral']);
const identity = () => (process.getuid() === 0 ? 'root' : `uid${process.getuid()}`);

/** The cases to run for one identity: `open` false runs the suite, true only open escapes. */
function select(cases, openList, who, open, only) {
  const isOpen = (id, mode) =>
    openList.some((o) => o.id === id && (!o.modes || o.modes.includes(mode)) && (!o.identities || o.identities.includes(who)));
  const out = [];
  for (const c of cases) {
    if (only && !only.includes(c.id)) continue;
    if (c.identities && !c.identities.includes(who)) continue;
    for (const mode of c.modes ?? MODES) {
      if (isOpen(c.id, mode) === open) out.push({ c, mode });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Witnesses.

/** Servers on the host that record every token that reaches them. */
class Witnesses {
  constructor() {
    this.records = []; // { via, data }
    this.closers = [];
  }

  async start() {
    const record = (via, data) => this.records.push({ via, data: String(data) });
    const tcp = async (host, name) => {
      const server = net.createServer((s) => {
        let data = '';
        s.on('data', (d) => {
          data += d;
          record(name, data);
          if (!s.replied) {
            s.replied = true;
            s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
          }
        });
        s.on('error', () => {});
        s.on('close', () => record(name, `closed:${data}`));
        record(name, 'connected');
      });
      await new Promise((res, rej) => server.once('error', rej).listen({ port: 0, host, ipv6Only: host === '::' }, res));
      this.closers.push(() => server.close());
      return server.address().port;
    };
    const udp = async (type, host, name) => {
      const sock = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
      sock.on('message', (m, rinfo) => {
        record(name, m);
        sock.send('pong', rinfo.port, rinfo.address);
      });
      await new Promise((res) => sock.bind(0, host, res));
      this.closers.push(() => sock.close());
      return sock.address().port;
    };
    this.tcp4 = await tcp('0.0.0.0', 'tcp4');
    this.tcp6 = await tcp('::', 'tcp6');
    this.allowed = await tcp('127.0.0.1', 'allowed');
    this.udp4 = await udp('udp4', '0.0.0.0', 'udp4');
    this.udp6 = await udp('udp6', '::', 'udp6');
    // An abstract Unix socket in the host's network namespace.
    this.abstract = `corral-escape-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
    const abs = net.createServer((s) => {
      let data = '';
      record('abstract', 'connected');
      s.on('data', (d) => record('abstract', (data += d)));
      s.on('error', () => {});
    });
    await new Promise((res) => abs.listen(`\0${this.abstract}`, res));
    this.closers.push(() => abs.close());
    // A process on the host that no sandbox may signal.
    this.victim = spawn('sleep', ['3600'], { stdio: 'ignore' });
    this.closers.push(() => this.victim.kill('SIGKILL'));
  }

  /** Records that carry `token`. */
  reached(token) {
    return this.records.filter((r) => r.data.includes(token)).map((r) => `${r.via} received ${JSON.stringify(r.data.slice(0, 80))}`);
  }

  /** A Unix socket server at `file` (stream or datagram) that records what reaches it. */
  async unixServer(file, type = 'stream') {
    if (type === 'dgram') {
      // Node has no Unix datagram sockets: a small Python one records instead.
      const py = spawn('python3', ['-c', DGRAM_SERVER, file], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      py.stdout.on('data', (d) => {
        out += d;
        this.records.push({ via: `unix-dgram ${file}`, data: out });
      });
      await new Promise((res) => py.stdout.once('data', res));
      this.closers.push(() => py.kill('SIGKILL'));
      return () => py.kill('SIGKILL');
    }
    const server = net.createServer((s) => {
      let data = '';
      this.records.push({ via: `unix ${file}`, data: 'connected' });
      s.on('data', (d) => this.records.push({ via: `unix ${file}`, data: (data += d) }));
      s.on('error', () => {});
    });
    await new Promise((res) => server.listen(file, res));
    this.closers.push(() => server.close());
    return () => server.close();
  }

  alive() {
    try {
      process.kill(this.victim.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  stop() {
    for (const c of this.closers) {
      try {
        c();
      } catch {}
    }
  }
}

const DGRAM_SERVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    print(s.recv(4096).decode(errors="replace"), flush=True)
`;

/** A file tree's state: type, mode, owner, size, content hash, link target per entry. */
function snapshot(p) {
  const out = {};
  const walk = (q) => {
    let st;
    try {
      st = fs.lstatSync(q);
    } catch {
      out[q] = 'missing';
      return;
    }
    let what = `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size}`;
    if (st.isSymbolicLink()) what += ` -> ${fs.readlinkSync(q)}`;
    else if (st.isFile()) {
      try {
        what += ` ${crypto.createHash('sha1').update(fs.readFileSync(q)).digest('hex').slice(0, 12)}`;
      } catch (e) {
        what += ` unreadable:${e.code}`;
      }
    }
    out[q] = what;
    if (st.isDirectory()) {
      let names = [];
      try {
        names = fs.readdirSync(q);
      } catch {}
      for (const n of names) walk(path.join(q, n));
    }
  };
  walk(p);
  return out;
}

function diff(before, after) {
  const found = [];
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (before[k] !== after[k]) found.push(`${k}: ${before[k] ?? 'missing'} → ${after[k] ?? 'missing'}`);
  }
  return found;
}

// ---------------------------------------------------------------------------------------
// One run of one case in one mode.

/** What a case's setup and witness see. */
class Trial {
  constructor(engine, c, mode, dir) {
    this.engine = engine;
    this.case = c;
    this.mode = mode;
    this.dir = dir;
    this.token = `T${crypto.randomBytes(6).toString('hex')}`;
    this.canaries = [];
    this.laters = [];
    this.cleanups = [];
    this.identity = identity();
    this.env = engine.env;
    this.w = engine.witnesses;
  }
  /** A path under this trial's own directory. */
  p(...parts) {
    return path.join(this.dir, ...parts);
  }
  file(rel, content, mode = 0o644) {
    const f = this.p(rel);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, content, { mode });
    fs.chmodSync(f, mode);
    return f;
  }
  mkdir(rel) {
    const d = this.p(rel);
    fs.mkdirSync(d, { recursive: true });
    return d;
  }
  symlink(target, rel) {
    const l = this.p(rel);
    fs.mkdirSync(path.dirname(l), { recursive: true });
    fs.symlinkSync(target, l);
    return l;
  }
  /** A fresh directory with a short path (Unix socket paths hold at most 107 bytes). */
  shortDir() {
    const d = path.join(this.engine.opts.scratch, `s${this.engine.counter++}`);
    fs.mkdirSync(d, { recursive: true });
    fs.chmodSync(d, 0o755);
    this.cleanup(() => fs.rmSync(d, { recursive: true, force: true }));
    return d;
  }
  /** The host must still hold `p` exactly as now, after the run and after a commit. */
  canary(p) {
    this.canaries.push({ p, before: snapshot(p) });
    return p;
  }
  /** Runs `fn` once the sandboxed probe is running (seen by its token on the host). */
  later(fn) {
    this.laters.push(fn);
  }
  cleanup(fn) {
    this.cleanups.push(fn);
  }
  /** Set-id and capability files below `dir` on the host. */
  setidFiles(dir) {
    const r = spawnSync(this.env.probe, ['scan', dir], { encoding: 'utf8' });
    try {
      return JSON.parse(r.stdout).map((f) => `${f.path} mode ${f.mode}${f.cap ? ' with file capabilities' : ''} owned by ${f.uid}`);
    } catch {
      return [`scan failed: ${r.stdout}${r.stderr}`];
    }
  }
}

class Engine {
  constructor(opts) {
    this.opts = opts;
    this.corral = require(opts.pkg);
    this.witnesses = new Witnesses();
    this.counter = 0;
  }

  async start() {
    await this.witnesses.start();
    fs.mkdirSync(this.opts.scratch, { recursive: true });
    const w = this.witnesses;
    // Secrets the sandbox must never see in any environment or argument list.
    this.envSecret = `ENVSECRET${crypto.randomBytes(6).toString('hex')}`;
    process.env.CORRAL_ESCAPE_SECRET = this.envSecret;
    this.env = {
      probe: this.opts.probe,
      probeDir: path.dirname(this.opts.probe),
      identity: identity(),
      uid: process.getuid(),
      pid: process.pid,
      envSecret: this.envSecret,
      helper: fs.realpathSync(path.join(this.opts.pkg, 'corral-helper')),
      hostAddrs: hostAddresses(),
      tcp4: w.tcp4,
      tcp6: w.tcp6,
      udp4: w.udp4,
      udp6: w.udp6,
      allowed: w.allowed,
      abstract: w.abstract,
      victimPid: w.victim.pid,
      memTotal: os.totalmem(),
    };
  }

  newDir(c, mode) {
    const d = path.join(this.opts.scratch, `${c.id.replace(/[^\w.-]/g, '_')}.${mode}.${this.counter++}`);
    fs.mkdirSync(d, { recursive: true });
    fs.chmodSync(d, 0o755);
    return d;
  }

  /** The policy for a mode: the case's, the probe made executable, the mode applied. */
  policyFor(base, mode) {
    const policy = JSON.parse(JSON.stringify(base ?? {}));
    policy.fs = policy.fs ?? {};
    policy.fs.exec = [...(policy.fs.exec ?? []), this.env.probeDir];
    policy.timeout = policy.timeout ?? '30s';
    if (mode === 'overlay') policy.fs.writeMode = 'overlay';
    if (mode === 'ephemeral') policy.fs.writeMode = 'ephemeral';
    if (mode === 'allowlist' && policy.network === undefined) policy.network = { allow: [`127.0.0.1:${this.env.allowed}`] };
    return policy;
  }

  /** Runs argv (probe arguments) in `mode`; resolves with {result, lines, error}. */
  async start_(mode, policy, argv, runOpts) {
    const probe = this.env.probe;
    const corral = this.corral;
    if (mode === 'pool') {
      const pool = new corral.Pool(policy, { size: 1, maxSize: 1 });
      try {
        return await pool.run([probe, 'run', ...argv], runOpts);
      } finally {
        await pool.close();
      }
    }
    if (mode === 'fork') {
      const clones = runOpts?.clones ?? 1;
      const t = await corral.template(policy, [probe, 'template', ...argv]);
      let outs;
      try {
        const cs = await t.fork(clones);
        outs = await Promise.all(cs.map((c) => c.output()));
      } finally {
        var closed = await t.close();
      }
      return {
        ...closed,
        stdout: outs.map((o) => o.stdout).join(''),
        stderr: outs.map((o) => o.stderr).join('') + closed.stderr,
        exitCode: outs.every((o) => o.exitCode === 0) ? 0 : outs.find((o) => o.exitCode !== 0)?.exitCode ?? null,
        signal: outs.find((o) => o.signal)?.signal ?? null,
      };
    }
    return corral.run(policy, [probe, 'run', ...argv], runOpts);
  }

  /**
   * Watches the host's processes for `token` in a command line; once the probe runs (and
   * blocks SIGUSR1), runs the laters and then sends it SIGUSR1: "go".
   */
  watchFor(token, laters) {
    if (!laters.length) return { stop() {}, done: Promise.resolve() };
    let stopped = false;
    const done = (async () => {
      while (!stopped) {
        const pids = processesWith(token).filter(blocksGo);
        if (pids.length) {
          for (const fn of laters) await fn();
          // Until the run ends: a template's clones appear after the template itself.
          while (!stopped) {
            for (const pid of processesWith(token).filter(blocksGo)) {
              try {
                process.kill(pid, 'SIGUSR1');
              } catch {}
            }
            await new Promise((r) => setTimeout(r, 10));
          }
          return;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    return { stop: () => (stopped = true), done };
  }

  async trial(c, mode) {
    const started = Date.now();
    const dir = this.newDir(c, mode);
    const t = new Trial(this, c, mode, dir);
    const out = { id: c.id, covers: c.covers, mode, identity: t.identity, status: 'held', findings: [], ms: 0 };
    try {
      const spec = await c.setup(t);
      if (spec.skip) {
        out.status = 'skipped';
        out.findings.push(spec.skip);
        return out;
      }
      const policy = spec.rawPolicy ? spec.policy : this.policyFor(spec.policy, mode);
      const watcher = this.watchFor(t.token, t.laters);
      let result;
      let error;
      // Every trial's probe carries the token, so the host can see it running.
      const argv = [...spec.argv.map(String), `#${t.token}`];
      try {
        result = spec.run ? await spec.run(t, policy) : await this.start_(mode, policy, argv, spec.runOpts);
      } catch (e) {
        error = e;
      }
      watcher.stop();
      await watcher.done;
      out.probe = [];
      if (result) {
        out.exitCode = result.exitCode;
        out.signal = result.signal;
        out.caveats = (result.caveats ?? []).map((x) => x.code);
        for (const line of String(result.stdout).split('\n')) {
          if (!line.startsWith('{')) continue;
          try {
            out.probe.push(JSON.parse(line));
          } catch {}
        }
        if (result.stderr) out.stderr = String(result.stderr).slice(0, 400);
      }
      if (error) out.refused = `${error.code ?? ''} ${error.message}`.slice(0, 300);
      const judge = (when) => {
        const f = [];
        for (const { p, before } of t.canaries) for (const d of diff(before, snapshot(p))) f.push(`${when}host changed: ${d}`);
        for (const r of this.witnesses.reached(t.token)) f.push(`${when}${r}`);
        return f;
      };
      // The probe's own view (not of writes in modes that capture them).
      const trustProbe = !c.witnessOnly && !(CAPTURING.has(mode) && c.writes);
      if (!error && result) {
        if (out.probe.length === 0 && !c.noProbeLine) out.findings.push(`probe printed no result (exit ${result.exitCode}, signal ${result.signal}): ${String(result.stderr).slice(0, 200)}`), (out.status = 'error');
        for (const line of out.probe) if (line.escaped === true && trustProbe) out.findings.push(`probe: ${line.detail}`);
      }
      out.findings.push(...judge(''));
      if (c.witness) out.findings.push(...((await c.witness(t, { result, error, probe: out.probe, spec })) ?? []));
      if (error && !c.mayRefuse && out.findings.length === 0) {
        out.status = 'error';
        out.findings.push(`the run was refused, and this case does not expect that: ${out.refused}`);
      }
      // A capturing run: what commit() would carry to the host must not escape either.
      if (result?.changes) {
        out.changes = result.changes.files.map((f) => `${f.kind[0].toUpperCase()} ${path.relative(dir, f.path)}`).slice(0, 20);
        try {
          await result.changes.commit();
          out.findings.push(...judge('after commit: '));
          if (c.witness) out.findings.push(...((await c.witness(t, { result, error, probe: out.probe, spec, committed: true })) ?? []).map((f) => `after commit: ${f}`));
        } catch (e) {
          out.commitError = String(e.message).slice(0, 200);
        }
      }
      // Reported instead of prevented, where the case accepts that (never in strict mode).
      const excuse = c.excuse && (result?.caveats ?? []).find(c.excuse);
      if (excuse && out.findings.length && out.status !== 'error') {
        out.excusedBy = `${excuse.code} (${excuse.field ?? ''}): ${excuse.message}`;
        out.findings = [];
      }
      if (out.status !== 'error' && out.findings.length) out.status = 'escaped';
    } catch (e) {
      out.status = 'error';
      out.findings.push(`harness: ${e.stack ?? e}`);
    } finally {
      for (const fn of t.cleanups) {
        try {
          await fn();
        } catch {}
      }
      // Dedupe; keep the report short.
      out.findings = [...new Set(out.findings)].slice(0, 12);
      out.ms = Date.now() - started;
    }
    return out;
  }
}

/** Host pids of processes with `token` in their command line. */
function processesWith(token) {
  const found = [];
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(token)) found.push(Number(pid));
    } catch {}
  }
  return found;
}

/** The probe blocks SIGUSR1 first thing and then renames itself; before that, "go" would
 *  kill it. */
function blocksGo(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'latin1').startsWith('probe-go-ready');
  } catch {
    return false;
  }
}

function hostAddresses() {
  const v4 = [];
  const v6 = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv4') v4.push(a.address);
      else if (!a.address.startsWith('fe80')) v6.push(a.address);
    }
  }
  return { v4, v6 };
}

async function pool(items, n, fn) {
  const results = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]);
      }
    }),
  );
  return results;
}

async function main() {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const opts = {
    pkg: path.resolve(opt('--pkg')),
    probe: path.resolve(opt('--probe')),
    scratch: path.resolve(opt('--scratch')),
    open: args.includes('--open'),
    only: opt('--only')?.split(','),
    jobs: Number(opt('--jobs') ?? 3),
  };
  const { CASES } = require('./cases.cjs');
  const { OPEN } = require('./open-cases.cjs');
  const engine = new Engine(opts);
  await engine.start();
  const chosen = select(CASES, OPEN, identity(), opts.open, opts.only);
  const emit = (r) => process.stdout.write(JSON.stringify(r) + '\n');
  const started = Date.now();
  // Cases that need the machine to themselves (fork bombs, environment changes) run last,
  // one at a time.
  const shared = chosen.filter((x) => !x.c.solo);
  const solo = chosen.filter((x) => x.c.solo);
  await pool(shared, opts.jobs, async ({ c, mode }) => emit(await engine.trial(c, mode)));
  for (const { c, mode } of solo) emit(await engine.trial(c, mode));
  // Witnesses that every case shares.
  const victimAlive = engine.witnesses.alive();
  engine.witnesses.stop();
  emit({ done: true, identity: identity(), ran: chosen.length, ms: Date.now() - started, victimAlive });
  process.exit(0);
}

module.exports = { MODES, select, snapshot };

if (require.main === module) {
  main().catch((e) => {
    process.stdout.write(JSON.stringify({ done: true, fatal: String(e.stack ?? e) }) + '\n');
    process.exit(1);
  });
}
