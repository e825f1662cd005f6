// The escape cases. Runs in: the engine (engine.cjs), once per (case, start mode, identity).
//
// A case is { id, covers, title, setup(t) → { policy, argv }, … }:
//   id       stable name, `<class>.<shape>`; `covers` names the reproduction or class
//   modes    start modes it runs in (default: all of engine.MODES)
//   setup    builds the host side in t.dir (t.file, t.mkdir, t.symlink), registers witnesses
//            (t.canary: the host path must stay as it is; t.later: act once the probe is
//            running) and returns the policy and the probe's arguments
//   witness  extra host-side checks after the run (and again after an overlay commit)
//   writes   the attack writes files: in overlay/ephemeral modes only the host decides
//   mayRefuse  a refused run (an error from corral) counts as held
//   excuse   caveat => true when a caveat naming the problem makes the outcome acceptable
//   solo     needs the machine to itself (runs last, alone)
//   identities  only as these ('root', 'uid65534'; default: every identity)
// See README.md in this folder.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const FS_MODES = ['cold', 'pool', 'fork', 'overlay', 'ephemeral', 'allowlist'];
/** Cases whose policy fixes the network, or that do not touch files: the start paths. */
const START_MODES = ['cold', 'pool', 'fork'];
/** A writable file system the defaults leave unbounded above this is not bounded. */
const DEFAULT_BOUND = 4 * 2 ** 30; // (4 << 30 is 0 in JavaScript's 32-bit shifts)
const WAIT = 5000;

function cmdlineHas(pid, text) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(text);
  } catch {
    return false;
  }
}

/**
 * Runs a helper program that prints one JSON object (with `error` when it failed) and
 * returns that object; throws, naming `what`, when it printed anything else or an error.
 */
async function execJson(what, file, args, opts) {
  const r = await exec(file, args, opts);
  let out;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    throw new Error(`${what} failed: ${r.stdout} ${r.stderr}`.slice(0, 300));
  }
  if (out.error) throw new Error(`${what} failed: ${out.error}`.slice(0, 300));
  return out;
}

/** Runs a program to completion without blocking the engine's other trials. */
function exec(file, args, opts = {}) {
  return new Promise((resolve) => {
    const child = require('node:child_process').spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 60000);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

const CASES = [];
const add = (c) => CASES.push(c);

// ---------------------------------------------------------------------------------------
// R1: writes outside scope and reads of paths not granted.

add({
  id: 'R1.modify-read-grant',
  covers: 'R1 write outside scope',
  writes: true,
  setup(t) {
    const ro = t.mkdir('ro');
    t.canary(t.file('ro/canary.txt', 'original\n'));
    return { policy: { fs: { read: [ro], write: [t.mkdir('rw')] } }, argv: ['modify', `${ro}/canary.txt`, t.token] };
  },
});
add({
  id: 'R1.create-in-read-grant',
  covers: 'R1 write outside scope',
  writes: true,
  setup(t) {
    const ro = t.canary(t.mkdir('ro'));
    return { policy: { fs: { read: [ro] } }, argv: ['create', ro, t.token] };
  },
});
for (const dir of ['/etc', '/usr/local/bin', '/usr/lib', '/', '/dev', '/proc']) {
  add({
    id: `R1.create-in-${dir.slice(1).replace(/\//g, '-') || 'root'}`,
    covers: 'R1 write outside scope (system directories)',
    writes: true,
    setup(t) {
      t.cleanup(() => removeTokenEntries(dir, t.token));
      return { policy: {}, argv: ['create', dir, t.token] };
    },
    witness(t) {
      return tokenEntries(dir, t.token).map((n) => `host gained ${dir}/${n}`);
    },
  });
}
add({
  id: 'R1.read-not-granted',
  covers: 'R1 read outside scope',
  setup(t) {
    const f = t.file('hidden/secret', `SECRET-${t.token}`);
    return { policy: { fs: { read: [t.mkdir('other')] } }, argv: ['read', f, `SECRET-${t.token}`] };
  },
});
add({
  id: 'R1.read-beside-grant-dotdot',
  covers: 'R1 read outside scope (..)',
  setup(t) {
    t.file('secret', `SECRET-${t.token}`);
    const sub = t.mkdir('sub');
    return { policy: { fs: { read: [sub] } }, argv: ['read', `${sub}/../secret`, `SECRET-${t.token}`] };
  },
});
add({
  id: 'R1.list-not-granted',
  covers: 'R1 read outside scope',
  setup(t) {
    t.file(`hidden/name-${t.token}`, 'x');
    return { policy: {}, argv: ['ls', t.p('hidden'), t.token] };
  },
});

// ---------------------------------------------------------------------------------------
// F5 / E3 / E8: deny carve-outs, at every place a path is visible and whenever it appears.

const denyRead = (id, covers, build, extra = {}) =>
  add({
    id,
    covers,
    ...extra,
    setup(t) {
      const marker = `SECRET-${t.token}`;
      const { policy, target } = build(t, marker);
      return { policy, argv: ['read', target, marker] };
    },
  });
denyRead('F5.deny-file', 'F5 deny', (t, m) => {
  const d = t.mkdir('proj');
  t.file('proj/.env', m);
  return { policy: { fs: { read: [d], deny: [`${d}/.env`] } }, target: `${d}/.env` };
});
denyRead('F5.deny-dir', 'F5 deny', (t, m) => {
  const d = t.mkdir('home');
  t.file('home/.aws/credentials', m);
  return { policy: { fs: { read: [d], deny: [`${d}/.aws/`] } }, target: `${d}/.aws/credentials` };
});
denyRead('F5.deny-spelled-with-dotdot', 'F5 deny (spelling)', (t, m) => {
  const d = t.mkdir('proj');
  t.mkdir('proj/sub');
  t.file('proj/.env', m);
  return { policy: { fs: { read: [d], deny: [`${d}/sub/../.env`] } }, target: `${d}/sub/../.env` };
});
denyRead('F5.deny-through-proc-root', 'F5 deny (another path: /proc/self/root)', (t, m) => {
  const d = t.mkdir('proj');
  t.file('proj/.env', m);
  return { policy: { fs: { read: [d], deny: [`${d}/.env`] } }, target: `/proc/self/root${d}/.env` };
});
denyRead('F5.deny-in-write-grant', 'F5 deny inside a writable tree', (t, m) => {
  const d = t.mkdir('proj');
  t.file('proj/.env', m);
  return { policy: { fs: { write: [d], deny: [`${d}/.env`] } }, target: `${d}/.env` };
});
add({
  id: 'F5.deny-hardlink',
  covers: 'R1 hardlink trick against deny',
  writes: true,
  setup(t) {
    const d = t.mkdir('proj');
    t.file('proj/.env', `SECRET-${t.token}`);
    return { policy: { fs: { write: [d], deny: [`${d}/.env`] } }, argv: ['link', `${d}/.env`, d, `SECRET-${t.token}`] };
  },
});
denyRead('E3.volume-alias-deny', 'E3', (t, m) => {
  const h = t.mkdir('home');
  t.file('home/project/.env', m);
  return {
    policy: { fs: { read: [h], volumes: [{ source: `${h}/project`, target: '/escape-work', readOnly: true }], deny: [`${h}/project/.env`] } },
    target: '/escape-work/.env',
  };
});
denyRead('E3.volume-alias-deny-deeper', 'E3 (another depth)', (t, m) => {
  const h = t.mkdir('home');
  t.file('home/project/.env', m);
  return {
    policy: { fs: { read: [`${h}/project`], volumes: [{ source: h, target: '/h', readOnly: true }], deny: [`${h}/project/.env`] } },
    target: '/h/project/.env',
  };
});
denyRead('E3.volume-alias-deny-dir', 'E3 (a denied directory)', (t, m) => {
  const h = t.mkdir('home');
  t.file('home/.aws/credentials', m);
  return {
    policy: { fs: { read: [h], volumes: [{ source: h, target: '/alias', readOnly: true }], deny: [`${h}/.aws`] } },
    target: '/alias/.aws/credentials',
  };
});
denyRead('E3.volume-alias-deny-writable', 'E3 (writable volume)', (t, m) => {
  const h = t.mkdir('proj');
  t.file('proj/.env', m);
  return {
    policy: { fs: { write: [h], volumes: [{ source: h, target: '/w' }], deny: [`${h}/.env`] } },
    target: '/w/.env',
  };
});
add({
  id: 'E3.volume-etc-shadow',
  covers: 'E3 (secret masks)',
  setup() {
    return { policy: { fs: { volumes: [{ source: '/etc', target: '/hostetc', readOnly: true }] } }, argv: ['read', '/hostetc/shadow', 'root:'] };
  },
});
add({
  id: 'E3.volume-alias-protect',
  covers: 'E3 (protect)',
  writes: true,
  setup(t) {
    const p = t.mkdir('proj');
    t.canary(t.file('proj/cfg', 'original\n'));
    return { policy: { fs: { write: [p], volumes: [{ source: p, target: '/w' }], protect: [`${p}/cfg`] } }, argv: ['modify', '/w/cfg', t.token] };
  },
});
// A volume whose source lies inside a denied, protected or masked path: the rule must hold
// there too. A denied or protected one is refused as a contradiction, as the same policy
// with `read` instead of a volume is; a default secret mask hides the volume.
denyRead('E3.volume-inside-denied-dir', 'E3 (a volume whose source is inside a denied directory)', (t, m) => {
  const h = t.mkdir('home');
  t.file('home/.aws/credentials', m);
  return {
    policy: { fs: { read: [h], deny: [`${h}/.aws`], volumes: [{ source: `${h}/.aws/credentials`, target: '/creds', readOnly: true }] } },
    target: '/creds',
  };
}, { mayRefuse: true });
denyRead('E3.volume-dir-inside-denied-dir', 'E3 (a volume of a directory inside a denied directory)', (t, m) => {
  const h = t.mkdir('home');
  t.file('home/.config/gcloud/credentials.db', m);
  return {
    policy: { fs: { read: [h], deny: [`${h}/.config`], volumes: [{ source: `${h}/.config/gcloud`, target: '/gcloud', readOnly: true }] } },
    target: '/gcloud/credentials.db',
  };
}, { mayRefuse: true });
add({
  id: 'E3.volume-inside-etc-secret',
  covers: 'E3 (secret masks: a volume of a file inside /etc/ssl/private)',
  // Another user cannot read the key on the host either.
  identities: ['root'],
  setup() {
    const key = fs.existsSync('/etc/ssl/private') ? fs.readdirSync('/etc/ssl/private').find((n) => fs.statSync(`/etc/ssl/private/${n}`).isFile()) : undefined;
    if (!key) return { skip: 'no file under /etc/ssl/private on this host' };
    return { policy: { fs: { volumes: [{ source: `/etc/ssl/private/${key}`, target: '/key', readOnly: true }] } }, argv: ['read', '/key', 'PRIVATE KEY'] };
  },
});
add({
  id: 'E3.volume-alias-socket',
  covers: 'E3 (socket masks)',
  async setup(t) {
    const d = t.shortDir();
    await t.w.unixServer(`${d}/agent.sock`);
    return { policy: { fs: { read: [d], volumes: [{ source: d, target: '/v', readOnly: true }] } }, argv: ['unix', '/v/agent.sock', t.token, 0] };
  },
});
const later = (id, covers, grant, build) =>
  add({
    id,
    covers,
    setup(t) {
      const d = t.mkdir('proj');
      const marker = `SECRET-${t.token}`;
      const { deny, file } = build(d);
      t.later(() => {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, marker);
      });
      return { policy: { fs: { [grant]: [d], deny } }, argv: ['later', file, marker, WAIT] };
    },
  });
// A denied path that does not exist is reserved by a placeholder: an empty file, or a
// directory when the path is written with a trailing slash (as `.aws/` here).
later('E8.deny-created-later', 'E8', 'read', (d) => ({ deny: [`${d}/.env`, `${d}/.aws/`], file: `${d}/.env` }));
later('E8.deny-dir-created-later', 'E8 (a directory)', 'read', (d) => ({ deny: [`${d}/.env`, `${d}/.aws/`], file: `${d}/.aws/credentials` }));
later('E8.deny-created-later-writable', 'E8 (inside a writable tree)', 'write', (d) => ({ deny: [`${d}/.env`], file: `${d}/.env` }));
add({
  id: 'E8.deny-names-sandbox-path',
  covers: 'E8 (deny that matches nothing)',
  // Refused (the path lies in a volume's target and not on the host), or a caveat.
  mayRefuse: true,
  excuse: (c) => (c.field ?? '').startsWith('fs.deny'),
  setup(t) {
    const d = t.mkdir('data');
    t.file('data/secret', `SECRET-${t.token}`);
    return { policy: { fs: { volumes: [{ source: d, target: '/data', readOnly: true }], deny: ['/data/secret'] } }, argv: ['read', '/data/secret', `SECRET-${t.token}`] };
  },
});

// ---------------------------------------------------------------------------------------
// F6 / E2 / E7: protected paths stay what they were, under their names.

const protect = (id, covers, build, extra = {}) =>
  add({
    id,
    covers,
    writes: true,
    ...extra,
    setup(t) {
      const r = t.mkdir('repo');
      t.file('repo/.git/HEAD', 'ref: refs/heads/main\n');
      t.file('repo/.git/config', '[core]\n\tbare = false\n');
      t.file('repo/a/b/c/file', 'original\n');
      return build(t, r, `EVIL-${t.token}`);
    },
  });
protect('E2.rename-ancestor', 'E2', (t, r, m) => {
  t.canary(`${r}/.git/config`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/config`, `${r}/.git/hooks`] } }, argv: ['replace', r, '.git', 'config', m] };
});
protect('E2.rename-ancestor-missing-path', 'E2 (a protected path that does not exist yet)', (t, r, m) => {
  t.canary(`${r}/.git/hooks`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/config`, `${r}/.git/hooks`] } }, argv: ['replace', r, '.git', 'hooks/pre-commit', m] };
});
protect('E2.exchange-ancestor', 'E2 (renameat2 RENAME_EXCHANGE)', (t, r, m) => {
  t.canary(`${r}/.git/config`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/config`] } }, argv: ['replace', r, '.git', 'config', m, 'exchange'] };
});
protect('E2.rename-ancestor-depth-3', 'E2 (another depth)', (t, r, m) => {
  t.canary(`${r}/a/b/c/file`);
  return { policy: { fs: { write: [r], protect: [`${r}/a/b/c/file`] } }, argv: ['replace', r, 'a', 'b/c/file', m] };
});
protect('E2.rename-ancestor-depth-2', 'E2 (another depth)', (t, r, m) => {
  t.canary(`${r}/a/b/c/file`);
  return { policy: { fs: { write: [r], protect: [`${r}/a/b/c/file`] } }, argv: ['replace', r, 'a/b', 'c/file', m] };
});
protect('E2.rename-protected-dir-parent', 'E2 (a protected directory)', (t, r, m) => {
  t.file('repo/.git/hooks/pre-commit', '#!/bin/sh\n', 0o755);
  t.canary(`${r}/.git/hooks`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/hooks`] } }, argv: ['replace', r, '.git', 'hooks/pre-commit', m] };
});
protect('F6.modify-protected', 'F6', (t, r) => {
  t.canary(`${r}/.git/config`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/config`] } }, argv: ['modify', `${r}/.git/config`, t.token] };
});
protect('F6.remove-protected', 'F6', (t, r) => {
  t.canary(`${r}/.git/config`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/config`] } }, argv: ['remove', `${r}/.git/config`] };
});
protect('F6.create-under-missing-protected', 'F6 (placeholder)', (t, r) => {
  t.canary(`${r}/.git/hooks`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/hooks`] } }, argv: ['create', `${r}/.git/hooks`, t.token] };
});
protect('F6.hardlink-protected', 'R1 hardlink trick against protect', (t, r) => {
  t.canary(`${r}/.git/config`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/config`] } }, argv: ['link', `${r}/.git/config`, r, 'bare'] };
});
add({
  id: 'E7.protect-through-symlinked-parent',
  covers: 'E7',
  writes: true,
  setup(t) {
    const home = t.mkdir('home');
    t.file('home/dotfiles/nvim/init.lua', 'original\n');
    t.symlink('../dotfiles/nvim', 'home/.config/nvim');
    t.canary(`${home}/.config/nvim`);
    t.canary(`${home}/dotfiles/nvim/init.lua`);
    return {
      policy: { fs: { write: [home], protect: [`${home}/.config/nvim/init.lua`] } },
      argv: ['replace', `${home}/.config`, 'nvim', 'init.lua', `EVIL-${t.token}`],
    };
  },
});
add({
  id: 'E7.protect-git-symlinked-outside',
  covers: 'E7 (.git a symlink out of every grant)',
  writes: true,
  mayRefuse: true,
  setup(t) {
    const proj = t.mkdir('proj');
    t.file('gitdir/config', '[core]\n');
    t.mkdir('gitdir/hooks');
    t.symlink(t.p('gitdir'), 'proj/.git');
    t.canary(`${proj}/.git`);
    t.canary(t.p('gitdir'));
    return { policy: { fs: { write: [proj], protect: [`${proj}/.git/hooks`] } }, argv: ['replace', proj, '.git', 'hooks/pre-commit', `EVIL-${t.token}`] };
  },
});

// A write grant or volume inside a protected directory, and a tree shown again inside itself.
protect('E3.writable-volume-inside-protected-dir', 'E3 (a writable volume whose source is inside a protected directory)', (t, r, m) => {
  t.mkdir('repo/.git/hooks');
  t.canary(`${r}/.git/hooks`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git`], volumes: [{ source: `${r}/.git/hooks`, target: '/hooks' }] } }, argv: ['plant', '/hooks/pre-commit', m] };
}, { mayRefuse: true });
protect('E3.write-grant-inside-protected-dir', 'E3 (a write grant inside a protected directory)', (t, r, m) => {
  t.mkdir('repo/.git/hooks');
  t.canary(`${r}/.git/hooks`);
  return { policy: { fs: { write: [r, `${r}/.git/hooks`], protect: [`${r}/.git`] } }, argv: ['plant', `${r}/.git/hooks/pre-commit`, m] };
}, { mayRefuse: true });
protect('E3.volume-target-inside-own-source', 'E3 (a volume of a tree mounted inside that same tree)', (t, r) => {
  t.mkdir('repo/nested');
  t.canary(`${r}/.git/config`);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/config`], volumes: [{ source: r, target: `${r}/nested` }] } }, argv: ['modify', `${r}/nested/.git/config`, t.token] };
});

// A file inside a protected or denied directory with another name outside it (a hard link
// an earlier run or a tool made): the write or read through the other name still happens,
// so the default run must say so in a caveat that names it (PROTECTED_DIR_HAS_LINKS,
// DENIED_DIR_HAS_LINKS; for a single file PROTECTED_FILE_HAS_LINKS, DENIED_FILE_HAS_LINKS),
// and strict mode must refuse to run.
const linkedHook = (t, r) => {
  const hook = t.file('repo/.git/hooks/pre-commit', '#!/bin/sh\nexit 0\n', 0o755);
  fs.linkSync(hook, `${r}/notes.txt`);
  t.canary(hook);
  return hook;
};
const names = (file) => (c) => c.code === 'PROTECTED_DIR_HAS_LINKS' && c.message.includes(file);
protect('F6.hardlink-into-protected-dir', 'R1 hardlink trick against protect (a file inside a protected directory)', (t, r, m) => {
  linkedHook(t, r);
  return { policy: { fs: { write: [r], protect: [`${r}/.git/hooks`] } }, argv: ['plant', `${r}/notes.txt`, m] };
}, { excuse: names('hooks/pre-commit') });
protect('F6.hardlink-into-protected-dir-deeper', 'R1 hardlink trick against protect (two levels inside the protected directory)', (t, r, m) => {
  linkedHook(t, r);
  return { policy: { fs: { write: [r], protect: [`${r}/.git`] } }, argv: ['plant', `${r}/notes.txt`, m] };
}, { excuse: names('hooks/pre-commit') });
protect('F6.hardlink-into-protected-dir-strict', 'R1 hardlink trick against protect (strict mode refuses)', (t, r, m) => {
  linkedHook(t, r);
  return { policy: { strict: true, fs: { write: [r], protect: [`${r}/.git/hooks`] } }, argv: ['plant', `${r}/notes.txt`, m] };
}, { mayRefuse: true });
const linkedCreds = (t, deeper) => {
  const h = t.mkdir('home');
  const f = t.file(deeper ? 'home/.aws/sso/cache/token.json' : 'home/.aws/credentials', `SECRET-${t.token}`);
  fs.linkSync(f, `${h}/creds.bak`);
  return h;
};
for (const [id, deeper, strict] of [['', false, false], ['-deeper', true, false], ['-strict', false, true]]) {
  add({
    id: `F5.hardlink-into-denied-dir${id}`,
    covers: `R1 hardlink trick against deny (a file inside a denied directory${deeper ? ', three levels down' : ''}${strict ? '; strict mode refuses' : ''})`,
    mayRefuse: strict,
    excuse: strict ? undefined : (c) => c.code === 'DENIED_DIR_HAS_LINKS' && c.message.includes(deeper ? 'cache/token.json' : '.aws/credentials'),
    setup(t) {
      const h = linkedCreds(t, deeper);
      return { policy: { strict, fs: { read: [h], deny: [`${h}/.aws`] } }, argv: ['read', `${h}/creds.bak`, `SECRET-${t.token}`] };
    },
  });
}

// The same link, but the file sits in a subdirectory the caller may pass through and not
// list (mode 0311): the walk cannot read it, and the sandbox does not need to, since it
// reads the file by its name outside. Not checking it in full must be said.
add({
  id: 'F5.hardlink-into-denied-dir-unlistable',
  covers: 'R1 hardlink trick against deny (the file in a subdirectory its owner cannot list)',
  excuse: (c) => (c.code === 'DENIED_DIR_HAS_LINKS' && c.message.includes('locked/credentials')) || (c.code === 'LINKS_UNCHECKED' && c.message.includes('/.aws')),
  setup(t) {
    const h = t.mkdir('home');
    const f = t.file('home/.aws/locked/credentials', `SECRET-${t.token}`);
    fs.linkSync(f, `${h}/creds.bak`);
    fs.chmodSync(`${h}/.aws/locked`, 0o311);
    t.cleanup(() => fs.chmodSync(`${h}/.aws/locked`, 0o755));
    return { policy: { fs: { read: [h], deny: [`${h}/.aws`] } }, argv: ['read', `${h}/creds.bak`, `SECRET-${t.token}`] };
  },
});

// Carve-outs whose path the host replaces while the sandbox runs: an editor's atomic save,
// `git config` (writes config.lock, renames it over config), another run's clean-up.
add({
  id: 'F5.deny-replaced-by-rename-during-run',
  covers: 'F5 deny (something created later: an atomic save on the host)',
  setup(t) {
    const d = t.mkdir('proj');
    t.file('proj/.env', 'OLD=1\n');
    const marker = `SECRET-${t.token}`;
    t.later(() => {
      fs.writeFileSync(`${d}/.env.tmp`, marker);
      fs.renameSync(`${d}/.env.tmp`, `${d}/.env`);
    });
    return { policy: { fs: { read: [d], deny: [`${d}/.env`] } }, argv: ['after-go', WAIT, 'read', `${d}/.env`, marker] };
  },
});
add({
  id: 'F5.deny-dir-replaced-during-run',
  covers: 'F5 deny (a denied directory replaced on the host)',
  setup(t) {
    const d = t.mkdir('home');
    t.file('home/.aws/credentials', 'old\n');
    const marker = `SECRET-${t.token}`;
    t.later(() => {
      fs.mkdirSync(`${d}/.aws.new`);
      fs.writeFileSync(`${d}/.aws.new/credentials`, marker);
      fs.renameSync(`${d}/.aws`, `${d}/.aws.old`);
      fs.renameSync(`${d}/.aws.new`, `${d}/.aws`);
    });
    return { policy: { fs: { read: [d], deny: [`${d}/.aws`] } }, argv: ['after-go', WAIT, 'read', `${d}/.aws/credentials`, marker] };
  },
});
// Init watches every directory from the grant's root down to each carve-out: a host that
// swaps the denied file's directory (a tool that rewrites a config directory, a restore, a
// sync) gets the new file masked too, and a protected path's ancestor pins come back.
add({
  id: 'F5.deny-parent-dir-replaced-during-run',
  covers: 'F5 deny (the host replaces the denied file\'s directory during a run)',
  setup(t) {
    const d = t.mkdir('home');
    t.file('home/.aws/credentials', 'old\n');
    t.file('home/.aws/config', '[default]\n');
    const marker = `SECRET-${t.token}`;
    t.later(() => {
      fs.mkdirSync(`${d}/.aws.new`);
      fs.writeFileSync(`${d}/.aws.new/credentials`, marker);
      fs.renameSync(`${d}/.aws`, `${d}/.aws.old`);
      fs.renameSync(`${d}/.aws.new`, `${d}/.aws`);
    });
    // Read well after the swap: not a race with init's wake-up.
    return { policy: { fs: { read: [d], deny: [`${d}/.aws/credentials`] } }, argv: ['after-go', WAIT, 'after-ms', 1000, 'read', `${d}/.aws/credentials`, marker] };
  },
});
protect('F6.protect-parent-dir-replaced-during-run', 'F6 protect (the host replaces the protected file\'s directory during a run)', (t, r) => {
  const config = `${r}/.git/config`;
  t.later(() => {
    // As a restore or a re-clone moved into place does: a copy of .git renamed over it.
    fs.cpSync(`${r}/.git`, `${r}/.git.new`, { recursive: true });
    fs.renameSync(`${r}/.git`, `${r}/.git.old`);
    fs.renameSync(`${r}/.git.new`, `${r}/.git`);
    t.canary(config);
  });
  return { policy: { fs: { write: [r], protect: [config] } }, argv: ['after-go', WAIT, 'after-ms', 1000, 'modify', config, t.token] };
});
protect('F6.protect-replaced-by-git-during-run', 'F6 protect (git rewrites the protected file by rename)', (t, r) => {
  const config = `${r}/.git/config`;
  t.later(() => {
    fs.writeFileSync(`${config}.lock`, `[core]\n\tbare = false\n[user]\n\tname = host-${t.token}\n`);
    fs.renameSync(`${config}.lock`, config);
    t.canary(config);
  });
  return { policy: { fs: { write: [r], protect: [config] } }, argv: ['after-go', WAIT, 'modify', config, t.token] };
});
protect('F6.placeholder-removed-by-concurrent-run', 'F6 protect (a placeholder another run removes)', async (t, r) => {
  // Another sandbox with the same policy holds the placeholder for .git/hooks; when it
  // ends and its placeholder goes, this one must still not create .git/hooks.
  t.canary(`${r}/.git/hooks`);
  const policy = { fs: { write: [r], protect: [`${r}/.git/hooks`] } };
  const other = t.engine.corral.spawn(policy, ['/bin/sh', '-c', 'echo up; sleep 0.3']);
  await new Promise((res) => other.stdout.once('data', res));
  t.cleanup(async () => {
    other.kill('SIGKILL');
    await other.wait();
  });
  t.later(async () => {
    await Promise.race([other.wait(), new Promise((res) => setTimeout(res, 3000))]);
    for (let i = 0; i < 100 && fs.existsSync(`${r}/.git/hooks`); i++) await new Promise((res) => setTimeout(res, 10));
  });
  return { policy, argv: ['after-go', WAIT, 'plant', `${r}/.git/hooks/pre-commit`, `EVIL-${t.token}`] };
});
// The placeholder under a protected path is pinned read-only, so the sandbox can open it
// and lock it: another run with the same rule must still start beside it.
add({
  id: 'TENANT.placeholder-exclusive-lock-from-sandbox',
  covers: 'Tenants (a sandbox locks the placeholder of its protected path)',
  async setup(t) {
    const r = t.mkdir('repo');
    const envrc = `${r}/.envrc`;
    const policy = { fs: { write: [r], protect: [envrc] } };
    t.beside = 'not started';
    t.later(async () => {
      // Once the probe has had a moment to lock it, a run beside it.
      await new Promise((res) => setTimeout(res, 200));
      try {
        const res = await t.engine.corral.run(policy, ['true']);
        t.beside = `exit ${res.exitCode}`;
      } catch (e) {
        t.beside = `refused: ${String(e.message).slice(0, 200)}`;
      }
    });
    return { policy, argv: ['flockhold', envrc, WAIT] };
  },
  witness(t) {
    return t.beside === 'exit 0' ? [] : [`a run with the same protect beside it: ${t.beside}`];
  },
});
// A placeholder a helper killed outright left behind stands with nobody's lock on it until
// the next sweep, and every local user may open it (0644 files, 0755 directories, so that a
// sandbox of another caller can stand on it). Whatever lock someone else takes on it must
// not refuse, stall or weaken a later run that carves out that path: an exclusive flock,
// a shared one, on a file or on a directory.
const leftoverLocked = (id, covers, { dir = false, lock = '-x' } = {}) =>
  add({
    id,
    covers,
    async setup(t) {
      const { spawn, spawnSync } = require('node:child_process');
      const r = t.mkdir('repo');
      t.mkdir('repo/.git');
      const target = dir ? `${r}/.git/hooks` : `${r}/.envrc`;
      const policy = { fs: { write: [r], protect: [target] } };
      // A client whose helper is killed outright while its sandbox stands on the placeholder.
      const code = `require(${JSON.stringify(t.engine.opts.pkg)}).run(${JSON.stringify(policy)}, ['/bin/sh', '-c', 'sleep 60']).catch(() => {})`;
      const client = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
      const helpers = () => {
        const found = [];
        for (const p of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
          try {
            if (fs.readFileSync(`/proc/${p}/environ`, 'latin1').split('\0').includes(`CORRAL_HELPER_PARENT=${client.pid}`)) found.push(Number(p));
          } catch {}
        }
        return found;
      };
      for (let i = 0; i < 500 && !(fs.existsSync(target) && helpers().length > 1); i++) await new Promise((res) => setTimeout(res, 20));
      for (const pid of helpers()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      client.kill('SIGKILL');
      for (let i = 0; i < 500 && helpers().length; i++) await new Promise((res) => setTimeout(res, 20));
      // Another process (as root: another user) holds a lock on what was left.
      const who = process.getuid() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'] : [];
      const holder = spawn(who[0] ?? 'flock', [...who.slice(1), ...(who.length ? ['flock'] : []), lock, '-w', '10', target, 'sleep', '60'], { stdio: 'ignore', detached: true });
      t.cleanup(() => {
        try {
          process.kill(-holder.pid, 'SIGKILL'); // flock and the sleep that holds the lock
        } catch {}
        fs.rmSync(target, { force: true, recursive: true });
      });
      // Until the holder has it: the other kind of lock is refused.
      const other = lock === '-x' ? '-s' : '-x';
      for (let i = 0; i < 100 && spawnSync('flock', ['-n', other, target, 'true']).status === 0; i++) await new Promise((res) => setTimeout(res, 20));
      if (!dir) return { policy, argv: ['read', target, t.token] };
      // The run must start, and the protected directory must still refuse what it plants.
      t.canary(`${target}/pre-commit`);
      return { policy, argv: ['plant', `${target}/pre-commit`, `EVIL-${t.token}`] };
    },
  });
leftoverLocked('LEFTOVER.placeholder-locked-by-another-user', 'Tenants (leftovers of one run are inputs to the next: a lock on a leftover placeholder)');
leftoverLocked('LEFTOVER.placeholder-shared-locked-by-another-user', 'Tenants (a shared lock on a leftover placeholder)', { lock: '-s' });
leftoverLocked('LEFTOVER.placeholder-dir-locked-by-another-user', 'Tenants (a lock on a leftover placeholder directory)', { dir: true });

// ---------------------------------------------------------------------------------------
// E6: a symlink planted earlier must not redirect a grant.

const planted = (id, covers, build, extra = {}) =>
  add({
    id,
    covers,
    mayRefuse: true,
    excuse: (c) => /SYMLINK/.test(c.code) && (c.field ?? '').startsWith('fs.'),
    ...extra,
    async setup(t) {
      const secret = t.mkdir('secret');
      t.canary(t.file('secret/id_rsa', `TOPSECRET-${t.token}\n`));
      t.mkdir('proj');
      return build(t, secret, `TOPSECRET-${t.token}`);
    },
  });
// The command knows where the secret lives: wherever a grant lands, reading it by its own
// path is the escape.
planted('E6.symlinked-write-grant-read', 'E6', (t, secret, m) => {
  t.symlink(secret, 'proj/out');
  return { policy: { fs: { read: [t.p('proj')], write: [t.p('proj/out')] } }, argv: ['read', `${secret}/id_rsa`, m] };
});
planted('E6.symlinked-write-grant-write', 'E6', (t, secret) => {
  t.symlink(secret, 'proj/out');
  return { policy: { fs: { read: [t.p('proj')], write: [t.p('proj/out')] } }, argv: ['modify', `${secret}/id_rsa`, t.token] };
}, { writes: true });
planted('E6.symlink-relative', 'E6 (relative link)', (t, secret, m) => {
  t.symlink('../secret', 'proj/out');
  return { policy: { fs: { write: [t.p('proj/out')] } }, argv: ['read', `${secret}/id_rsa`, m] };
});
planted('E6.symlink-intermediate-component', 'E6 (a link at another component)', (t, secret, m) => {
  t.symlink(t.dir, 'proj/mid');
  return { policy: { fs: { write: [t.p('proj/mid/secret')] } }, argv: ['read', `${secret}/id_rsa`, m] };
});
planted('E6.symlinked-volume-source', 'E6 (volume source)', (t, secret, m) => {
  t.symlink(secret, 'proj/out');
  return { policy: { fs: { volumes: [{ source: t.p('proj/out'), target: '/out' }] } }, argv: ['read', '/out/id_rsa', m] };
});
planted('E6.planted-by-a-run', 'E6 (the literal reproduction: an earlier sandbox plants it)', async (t, secret, m) => {
  const proj = t.p('proj');
  t.mkdir('proj/out');
  const r = await t.engine.corral.run({ fs: { write: [proj] } }, ['/bin/sh', '-c', `rm -rf ${proj}/out && ln -s ${secret} ${proj}/out`]);
  if (r.exitCode !== 0) throw new Error(`planting run failed: ${r.stderr}`);
  return { policy: { fs: { read: [proj], write: [`${proj}/out`] } }, argv: ['read', `${secret}/id_rsa`, m] };
});
planted('E6.symlink-strict', 'E6 (strict mode refuses)', (t, secret, m) => {
  t.symlink(secret, 'proj/out');
  return { policy: { strict: true, fs: { write: [t.p('proj/out')] } }, argv: ['read', `${secret}/id_rsa`, m] };
}, { excuse: undefined });

// A root caller follows root-owned symlinks under /usr and /etc (and in /, /var, /home) as
// the system's own. But a root caller's earlier sandbox that could write there (`npm i -g`
// with `--write /usr/local`) leaves root-owned links: the idmapped grant stores the
// caller's ids.
planted('E6.root-link-planted-under-usr', 'E6 (root caller: a link an earlier root run planted under /usr)', async (t, secret, m) => {
  const d = `/usr/local/share/corral-escape-${t.token}`;
  fs.mkdirSync(`${d}/out`, { recursive: true, mode: 0o755 });
  fs.chmodSync(d, 0o755);
  t.cleanup(() => fs.rmSync(d, { recursive: true, force: true }));
  const r = await t.engine.corral.run({ fs: { write: [d] } }, ['/bin/sh', '-c', `rm -rf ${d}/out && ln -s ${secret} ${d}/out`]);
  if (r.exitCode !== 0) throw new Error(`planting run failed: ${r.stderr}`);
  return { policy: { fs: { write: [`${d}/out`] } }, argv: ['read', `${secret}/id_rsa`, m] };
}, { identities: ['root'] });
planted('E6.root-link-planted-under-etc', 'E6 (root caller: a link an earlier root run planted under /etc)', async (t, secret) => {
  const d = `/etc/corral-escape-${t.token}`;
  fs.mkdirSync(`${d}/conf.d`, { recursive: true, mode: 0o755 });
  fs.chmodSync(d, 0o755);
  t.cleanup(() => fs.rmSync(d, { recursive: true, force: true }));
  const r = await t.engine.corral.run({ fs: { write: [d] } }, ['/bin/sh', '-c', `rm -rf ${d}/conf.d && ln -s ${secret} ${d}/conf.d`]);
  if (r.exitCode !== 0) throw new Error(`planting run failed: ${r.stderr}`);
  return { policy: { fs: { write: [`${d}/conf.d`] } }, argv: ['modify', `${secret}/id_rsa`, t.token] };
}, { identities: ['root'], writes: true });

// ---------------------------------------------------------------------------------------
// E1 / F27: no set-user-ID, set-group-ID or capability files reach the host.

add({
  id: 'E1.setid-in-write-grant',
  covers: 'E1',
  writes: true,
  setup(t) {
    return { policy: { fs: { write: [t.mkdir('w')] } }, argv: ['setid', t.p('w')] };
  },
  witness(t) {
    return t.setidFiles(t.p('w')).map((f) => `host has ${f}`);
  },
});
add({
  id: 'E1.setid-through-volume',
  covers: 'E1 (through a volume)',
  writes: true,
  setup(t) {
    return { policy: { fs: { volumes: [{ source: t.mkdir('w'), target: '/vol' }] } }, argv: ['setid', '/vol'] };
  },
  witness(t) {
    return t.setidFiles(t.p('w')).map((f) => `host has ${f}`);
  },
});

// A set-id file already in a root caller's write grant: host root's files are the sandbox
// root's there (idmapped), and a shared writable mapping changes a file without clearing its
// set-id bits or capabilities (write(2) and truncate(2) do clear them). The helper refuses
// every open of such a file through a writable grant; each shape below reaches the same
// inode another way.
const keptPrivilege = (f, original) => {
  const st = fs.statSync(f);
  const changed = !fs.readFileSync(f, 'utf8').includes(original);
  return changed && st.mode & 0o6000 ? [`host ${f} kept mode ${(st.mode & 0o7777).toString(8)} with the sandbox's content`] : [];
};
const TOOL = '#!/bin/sh\necho original\n';
for (const [suffix, covers, mode] of [
  ['', 'a set-user-ID file', 0o4755],
  ['-setgid', 'a set-group-ID, group-executable file', 0o2755],
]) {
  add({
    id: `E1.rewrite-setid-file-by-mapping${suffix}`,
    covers: `E1 (${covers} already in a write grant, rewritten through a shared mapping)`,
    writes: true,
    // A set-id file of the test user's own: only root's is a privilege.
    identities: ['root'],
    setup(t) {
      const f = t.file('w/tool', TOOL, mode);
      return { policy: { fs: { write: [t.p('w')] } }, argv: ['mapwrite', f] };
    },
    witness: (t) => keptPrivilege(t.p('w/tool'), 'original'),
  });
}
add({
  id: 'E1.rewrite-setid-file-by-mapping-through-volume',
  covers: 'E1 (the set-user-ID file through a writable volume, another path to the same inode)',
  writes: true,
  identities: ['root'],
  setup(t) {
    t.file('w/tool', TOOL, 0o4755);
    return { policy: { fs: { volumes: [{ source: t.p('w'), target: '/vol' }] } }, argv: ['mapwrite', '/vol/tool'] };
  },
  witness: (t) => keptPrivilege(t.p('w/tool'), 'original'),
});
add({
  id: 'E1.rewrite-setid-file-by-mapping-through-link',
  covers: 'E1 (the set-user-ID file hard-linked to a new name by the command, then mapped)',
  writes: true,
  identities: ['root'],
  setup(t) {
    const f = t.file('w/tool', TOOL, 0o4755);
    return { policy: { fs: { write: [t.p('w')] } }, argv: ['maplink', f, t.p('w/innocent')] };
  },
  witness: (t) => keptPrivilege(t.p('w/tool'), 'original'),
});
add({
  id: 'E1.rewrite-setid-file-by-mapping-in-submount',
  covers: 'E1 (the set-user-ID file on a file system mounted inside the write grant)',
  writes: true,
  identities: ['root'],
  setup(t) {
    const sub = t.mkdir('w/mnt');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', sub]);
    } catch (e) {
      return { skip: `cannot mount a tmpfs inside the grant: ${e.message}` };
    }
    t.cleanup(() => execFileSync('umount', ['-l', sub]));
    const f = t.file('w/mnt/tool', TOOL, 0o4755);
    return { policy: { fs: { write: [t.p('w')] } }, argv: ['mapwrite', f] };
  },
  witness: (t) => keptPrivilege(t.p('w/mnt/tool'), 'original'),
});
add({
  id: 'E1.rewrite-capability-file-by-mapping',
  covers: 'E1 (a file with file capabilities already in a write grant, rewritten through a shared mapping)',
  writes: true,
  identities: ['root'],
  setup(t) {
    const f = t.file('w/tool', TOOL, 0o755);
    try {
      execFileSync('setcap', ['cap_net_raw+ep', f]);
    } catch (e) {
      return { skip: `setcap is not available here: ${e.message}` };
    }
    return { policy: { fs: { write: [t.p('w')] } }, argv: ['mapwrite', f] };
  },
  witness(t) {
    const f = t.p('w/tool');
    const changed = !fs.readFileSync(f, 'utf8').includes('original');
    const caps = execFileSync('getcap', [f], { encoding: 'utf8' }).trim();
    return changed && caps ? [`host ${f} kept its capabilities (${caps}) with the sandbox's content`] : [];
  },
});

// Pins (a path mounted on itself: the ancestors of a protected path, an `exec` or `noexec`
// directory inside the grant) are copies of the grant's mount made while the view is built,
// after the helper marked the grant: each must be guarded too.
for (const [suffix, covers, extra] of [
  ['under-protected-ancestor', 'the directory above a protected file, pinned writable', (t) => ({ protect: [t.file('w/sub/keep', 'keep\n')] })],
  ['under-exec-pin', 'an exec directory inside the write grant', (t) => ({ exec: [t.p('w/sub')] })],
  ['under-noexec-pin', 'a noexec directory inside the write grant', (t) => ({ noexec: [t.p('w/sub')] })],
]) {
  add({
    id: `E1.rewrite-setid-file-by-mapping-${suffix}`,
    covers: `E1 (a set-user-ID file in ${covers})`,
    writes: true,
    identities: ['root'],
    setup(t) {
      const f = t.file('w/sub/tool', TOOL, 0o4755);
      return { policy: { fs: { write: [t.p('w')], ...extra(t) } }, argv: ['mapwrite', f] };
    },
    witness: (t) => keptPrivilege(t.p('w/sub/tool'), 'original'),
  });
}
// The host replaces a pinned directory during the run: the warden pins what now stands
// there, again a copy of the grant's mount.
add({
  id: 'E1.rewrite-setid-file-by-mapping-in-a-directory-the-host-replaced',
  covers: 'E1 (a set-user-ID file in a pinned directory the host replaced during the run)',
  writes: true,
  identities: ['root'],
  modes: ['cold'],
  setup(t) {
    t.file('w/sub/keep', 'keep\n');
    t.later(() => {
      fs.renameSync(t.p('w/sub'), t.p('w/sub.old'));
      t.file('w/sub/keep', 'keep\n');
      t.file('w/sub/tool', TOOL, 0o4755);
    });
    return { policy: { fs: { write: [t.p('w')], protect: [t.p('w/sub/keep')] } }, argv: ['mapwritelater', t.p('w/sub/tool'), 3000] };
  },
  witness: (t) => keptPrivilege(t.p('w/sub/tool'), 'original'),
});
// An access ACL sets a file's permission bits and, unlike chmod, keeps its set-id bits;
// seccomp cannot read the attribute's name, and the guard asks only at open.
add({
  id: 'E1.setid-file-made-world-writable-by-acl',
  covers: 'E1 (a set-user-ID-root file in a write grant given o+w by an ACL, for any host user to rewrite)',
  writes: true,
  identities: ['root'],
  setup(t) {
    const f = t.file('w/tool', TOOL, 0o4755);
    return { policy: { fs: { write: [t.p('w')] } }, argv: ['aclmode', f, '5', '7', ''] };
  },
  witness(t) {
    const m = fs.statSync(t.p('w/tool')).mode & 0o7777;
    return m & 0o6000 && m & 0o022 ? [`host ${t.p('w/tool')} is now mode ${m.toString(8)}: set-user-ID root and writable by others`] : [];
  },
});
add({
  id: 'E1.setgid-file-made-executable-by-acl',
  covers: 'E1 (a set-group-ID file without group execute, rewritten, then given g+x by an ACL)',
  writes: true,
  identities: ['root'],
  setup(t) {
    const f = t.file('w/tool', TOOL, 0o2644);
    return { policy: { fs: { write: [t.p('w')] } }, argv: ['aclmode', f, '5', '5', 'ESCAPED!'] };
  },
  witness(t) {
    const f = t.p('w/tool');
    const m = fs.statSync(f).mode & 0o7777;
    const changed = !fs.readFileSync(f, 'utf8').includes('original');
    return m & 0o2000 && m & 0o010 && changed ? [`host ${f} is now mode ${m.toString(8)} (set-group-ID root, group-executable) with the sandbox's content`] : [];
  },
});
// The guard remembers a file it found plain (so later opens are not asked again); the host
// may make that file set-user-ID afterwards, and the next run must be refused all the same.
add({
  id: 'E1.rewrite-file-made-setid-after-an-earlier-run',
  covers: 'E1 (a verdict remembered from an earlier run of the same caller)',
  writes: true,
  identities: ['root'],
  modes: ['cold', 'pool', 'fork'],
  async setup(t) {
    const f = t.file('w/tool', TOOL, 0o755);
    const policy = { fs: { write: [t.p('w')] } };
    await t.engine.corral.run(policy, ['/bin/sh', '-c', `head -c1 ${f} >/dev/null`]);
    fs.chmodSync(f, 0o4755);
    return { policy, argv: ['mapwrite', f] };
  },
  witness: (t) => keptPrivilege(t.p('w/tool'), 'original'),
});
// The responder opens each file it is asked about. A write lease on the file makes that open
// fail (a lease is broken by any other open, and the responder's must not wait); the
// responder must answer that one (refuse) and go on, not stop guarding, which ends every
// guarded sandbox of the caller: here a victim beside the attacker.
add({
  id: 'TENANT.setid-guard-responder-stopped-by-a-lease',
  covers: 'R1 tenants (the set-id guard\'s responder serves every sandbox of the caller)',
  identities: ['root'],
  modes: ['cold'],
  solo: true,
  async setup(t) {
    const w = t.mkdir('w');
    const v = t.engine.corral.spawn({ fs: { write: [t.mkdir('v')] } }, ['/bin/sh', '-c', 'echo up; exec sleep 120']);
    await new Promise((res) => v.stdout.once('data', res));
    let ended = null;
    v.wait().then(
      () => (ended = 'exited'),
      (e) => (ended = e.message),
    );
    t.victimEnded = () => ended;
    t.cleanup(async () => {
      v.kill('SIGKILL');
      await v.wait().catch(() => {});
    });
    return { policy: { fs: { write: [w] }, timeout: '120s' }, argv: ['guardlease', w, 70000] };
  },
  async witness(t, { error }) {
    const f = [];
    // A run through the same helper after the attack: anything the helper did to the
    // victim because of it has been reported by the time this one is answered.
    await t.engine.corral.run({ fs: { write: [t.p('v')] } }, ['true']).catch(() => {});
    if (t.victimEnded()) f.push(`the guarded victim sandbox beside the attacker ended: ${t.victimEnded()}`.slice(0, 200));
    if (error) f.push(`the attacker's run was ended: ${error.message}`.slice(0, 200));
    return f;
  },
});

// ---------------------------------------------------------------------------------------
// E5: host-wide files a root caller's sandbox must not read.

for (const [name, kind] of [
  ['kpageflags', 'any'],
  ['kpagecount', 'any'],
  ['kpagecgroup', 'any'],
  ['slabinfo', 'any'],
  ['pagetypeinfo', 'any'],
  ['vmallocinfo', 'addr'],
  ['iomem', 'addr'],
  ['kallsyms', 'addr'],
  ['kmsg', 'any'],
  ['timer_list', 'any'],
  ['keys', 'any'],
]) {
  add({ id: `E5.proc-${name}`, covers: 'E5', modes: START_MODES, setup: () => ({ policy: {}, argv: ['proc', `/proc/${name}`, kind] }) });
}
add({
  id: 'E5.etc-root-only-file',
  covers: 'E5 (a root-only file under /etc)',
  modes: START_MODES,
  // Another user cannot read such a file on the host either.
  identities: ['root'],
  setup(t) {
    let file = rootOnlyEtcFile();
    if (!file) {
      // None here: one of our own in another default-visible system directory.
      file = `/usr/local/share/corral-escape-${t.token}`;
      fs.writeFileSync(file, 'root only\n', { mode: 0o600 });
      t.cleanup(() => fs.rmSync(file, { force: true }));
    }
    return { policy: {}, argv: ['proc', file, 'any'] };
  },
});
add({
  id: 'E5.write-core-pattern',
  covers: 'E5 (host-wide knobs)',
  modes: START_MODES,
  setup() {
    return { policy: {}, argv: ['writeproc', '/proc/sys/kernel/core_pattern', fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim()] };
  },
});
add({
  id: 'E5.write-core-pattern-via-proc-root',
  covers: 'E5 (host-wide knobs, another path)',
  modes: START_MODES,
  setup() {
    return { policy: {}, argv: ['writeproc', '/proc/self/root/proc/sys/kernel/core_pattern', fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim()] };
  },
});

// ---------------------------------------------------------------------------------------
// E4: Unix sockets, whenever they were created.

const socketCase = (id, covers, grant, where, { type = 'stream', when = 'later' } = {}) =>
  add({
    id,
    covers,
    async setup(t) {
      const d = t.shortDir();
      const file = path.join(d, where);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      if (when === 'before') await t.w.unixServer(file, type);
      else t.later(() => t.w.unixServer(file, type));
      return { policy: { fs: { [grant]: [d] } }, argv: ['unix', file, t.token, when === 'later' ? WAIT : 0] };
    },
  });
socketCase('E4.socket-created-later', 'E4', 'write', 'agent.sock');
socketCase('E4.socket-created-later-read-grant', 'E4 (read-only grant)', 'read', 'agent.sock');
socketCase('E4.socket-created-later-deep', 'E4 (another depth)', 'write', 'a/b/c/agent.sock');
socketCase('E4.dgram-socket-created-later', 'E4 (datagram)', 'write', 'log.sock', { type: 'dgram' });
socketCase('E4.socket-before-start', 'R1 Unix sockets (planned)', 'write', 'agent.sock', { when: 'before' });
socketCase('E4.socket-before-start-deep', 'R1 Unix sockets (planned, deep)', 'read', 'x/y/agent.sock', { when: 'before' });
socketCase('E4.dgram-socket-before-start', 'R1 Unix sockets (planned, datagram)', 'write', 'log.sock', { type: 'dgram', when: 'before' });
// The same later-created socket by other names (added by the outside review of the gate).
for (const how of ['symlink', 'symlink-dir', 'hardlink', 'procfd', 'procpid', 'thread-self', 'dotdot', 'relative']) {
  add({
    id: `E4.socket-created-later-via-${how}`,
    covers: 'E4 (another name for the socket)',
    setup(t) {
      const d = t.shortDir();
      const file = path.join(d, 'agent.sock');
      t.later(() => t.w.unixServer(file));
      return { policy: { fs: { write: [d] } }, argv: ['unixvia', how, file, t.token, WAIT] };
    },
  });
}
// Found by the outside review of the gate: it binds for the command, then opens what stands
// at the new name to remember the socket; another thread of the command renames a host
// program's socket (in a directory it may write) over that name in between, and the host's
// socket was remembered as the sandbox's own, so connecting to it was allowed.
add({
  id: 'E4.rename-host-socket-over-own-bind',
  covers: 'E4 (a host socket renamed over a name the sandbox just bound)',
  async setup(t) {
    const d = t.shortDir();
    const file = path.join(d, 'agent.sock');
    await t.w.unixServer(file);
    return { policy: { fs: { write: [d] } }, argv: ['bindrace', file, t.token, 6000] };
  },
});
add({
  id: 'E4.other-sandbox-proxy',
  covers: 'E4 (another sandbox\'s allow-list proxy)',
  solo: true,
  setup(t) {
    const d = t.shortDir();
    t.later(async () => {
      // The other sandbox's caller keeps its proxy socket under d (when the path is short
      // enough for a socket address, which is why d is).
      const old = process.env.XDG_RUNTIME_DIR;
      process.env.XDG_RUNTIME_DIR = d;
      const b = t.engine.corral.spawn({ network: { allow: [`127.0.0.1:${t.env.tcp4}`] } }, ['/bin/sh', '-c', 'echo up; sleep 30']);
      t.cleanup(async () => {
        b.kill('SIGKILL');
        await b.wait();
      });
      await new Promise((res) => b.stdout.once('data', res));
      if (old === undefined) delete process.env.XDG_RUNTIME_DIR;
      else process.env.XDG_RUNTIME_DIR = old;
    });
    return { policy: { fs: { write: [d] } }, argv: ['proxysock', d, '127.0.0.1', t.env.tcp4, t.token, 8000] };
  },
});
add({
  id: 'E4.other-sandbox-proxy-in-host-tmp',
  covers: 'E4 (another sandbox\'s proxy, with the host /tmp granted as the README\'s first example does)',
  solo: true,
  modes: START_MODES,
  setup(t) {
    t.later(async () => {
      const saved = { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR, TMPDIR: process.env.TMPDIR };
      delete process.env.XDG_RUNTIME_DIR;
      delete process.env.TMPDIR;
      const b = t.engine.corral.spawn({ network: { allow: [`127.0.0.1:${t.env.tcp4}`] } }, ['/bin/sh', '-c', 'echo up; sleep 30']);
      t.cleanup(async () => {
        b.kill('SIGKILL');
        await b.wait();
      });
      await new Promise((res) => b.stdout.once('data', res));
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
    });
    return { policy: { fs: { write: ['/tmp'] } }, argv: ['proxysock', '/tmp', '127.0.0.1', t.env.tcp4, t.token, 8000] };
  },
});
// Where Landlock cannot scope abstract sockets (ABI < 6) corral says so with a caveat.
const noScope = (c) => c.code === 'LANDLOCK_NO_SCOPE';
add({
  id: 'E4.host-abstract-socket',
  covers: 'R1 Unix sockets (abstract, host network)',
  modes: START_MODES,
  excuse: noScope,
  setup(t) {
    return { policy: { network: 'host' }, argv: ['unix', `@${t.env.abstract}`, t.token, 0] };
  },
});
add({
  id: 'E4.victim-sandbox-abstract-socket',
  covers: 'R1 a victim sandbox beside the attacker',
  modes: START_MODES,
  excuse: noScope,
  async setup(t) {
    const name = `corral-victim-${t.token}`;
    const v = t.engine.corral.spawn({ network: 'host', fs: { exec: [t.env.probeDir] } }, [t.env.probe, 'victim', name]);
    let out = '';
    v.stdout.on('data', (d) => (out += d));
    await new Promise((res) => v.stdout.once('data', res));
    t.victimOut = () => out;
    t.cleanup(async () => {
      v.kill('SIGKILL');
      await v.wait();
    });
    return { policy: { network: 'host' }, argv: ['unix', `@${name}`, t.token, 0] };
  },
  witness(t) {
    return /reached/.test(t.victimOut()) ? [`the victim sandbox was reached: ${t.victimOut().trim()}`] : [];
  },
});

// The socket gate in pid 1 copies each gated call's message out of the command's memory:
// nothing the command writes there may hang or crash pid 1 (which also reaps, reports the
// result, relays the allow-list bridge and puts carve-outs back). A control header whose
// length wraps the copier's offset around once looped pid 1 forever (the run then ended
// only at its timeout, after the command had long exited) or panicked it (reported as a
// failed setup).
for (const kind of ['loop', 'rights']) {
  add({
    id: `GATE.control-length-wraps-${kind}`,
    covers: 'R1 the socket gate (pid 1 must survive what the command sends it)',
    modes: ['cold', 'pool', 'fork', 'allowlist'],
    setup: () => ({ policy: { timeout: '6s' }, argv: ['gatewrap', kind] }),
    witness(t, { result, error }) {
      if (error) return [`the run failed instead of reporting the command's exit: ${error.code ?? ''} ${error.message}`.slice(0, 200)];
      if (result?.timedOut) return ['the command exited after 200 ms but the run ended only at its 6 s timeout (pid 1 stopped serving)'];
      return [];
    },
  });
}

// The gate sends from its own copy of the command's bytes, which it frees at once: a send
// with MSG_ZEROCOPY would lend the kernel those pages until the bytes leave, and they would
// leave carrying whatever init wrote there next (another process's message: a sibling's, a
// clone's of the same template).
add({
  id: 'GATE.zerocopy-send-leaks-init-memory',
  covers: 'W7 (another process\'s data, through the memory of the gate that sends for it)',
  modes: ['cold', 'pool', 'fork', 'allowlist'],
  setup: (t) => ({ policy: {}, argv: ['zerocopy', `SIBLING-${t.token}-`] }),
});

// Init's descriptor limit is its caller's (1024 is common), and the gate keeps a descriptor
// for every socket it bound: 1500 temporary sockets (each closed and removed at once) must
// all bind, and a socket bound after them must still take connections.
const BINDS_RUNNER = `
const corral = require(process.argv[1]);
const [probe, probeDir] = process.argv.slice(2);
corral.run({ fs: { exec: [probeDir] }, timeout: '60s' }, [probe, 'run', 'binds', '1500'])
  .then((r) => { process.stdout.write(JSON.stringify({ out: String(r.stdout).trim(), exit: r.exitCode })); process.exit(0); })
  .catch((e) => { process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) })); process.exit(1); });
`;
add({
  id: 'GATE.binds-within-init-descriptor-limit',
  covers: 'R1 the socket gate (init\'s descriptors, under a caller limited to 1024)',
  modes: ['cold'],
  noProbeLine: true,
  setup(t) {
    return {
      policy: {},
      argv: ['binds', 1500],
      run: async () => {
        const args = ['--nofile=1024:1024', process.execPath, '-e', BINDS_RUNNER, t.engine.opts.pkg, t.env.probe, t.env.probeDir];
        t.binds = await execJson('binds runner', 'prlimit', args, { timeout: 90000 });
        return { stdout: '', stderr: '', exitCode: 0, signal: null, caveats: [] };
      },
    };
  },
  witness(t) {
    const out = t.binds?.out ?? '';
    return /binds_ok=1500\/1500/.test(out) && /own_connect=ok/.test(out) ? [] : [`caller limited to 1024 descriptors: ${out}`.slice(0, 300)];
  },
});

// Calls that wait (a blocking connect to a full listener) are parked in the gate and tried
// again; they must not starve the calls of other processes of the sandbox (a template's
// clones, the template's own fork replies, which go through the gate too).
add({
  id: 'GATE.parked-calls-starve-others',
  covers: 'R1 the socket gate (one process must not stall every gated call of the sandbox)',
  modes: START_MODES,
  solo: true,
  noProbeLine: true,
  setup: () => ({ policy: { timeout: '20s' }, argv: ['gatepark', 1000] }),
  witness(t, { result, error, probe }) {
    if (error) return [`the run failed: ${error.code ?? ''} ${error.message}`.slice(0, 200)];
    const ms = /victim_ms=(\d+)/.exec(probe.map((p) => p.detail).join(' '))?.[1];
    if (result?.timedOut || ms === undefined) return ['with 1000 threads waiting in connect(), a connect that fails at once (ENOENT) had no answer within the run\'s 20 s'];
    return Number(ms) > 10000 ? [`with 1000 threads waiting in connect(), a connect that fails at once (ENOENT) took ${ms} ms`] : [];
  },
});

// ---------------------------------------------------------------------------------------
// E9 / W5: execution of what the sandbox wrote. Writable places run programs by default
// (README: "What may run"); with `execWritable: false` (W^X) none may, by any route. A read
// grant never runs programs.

const MARK = 'EXEC-RAN';
const WX = { execWritable: false };
for (const [where, dir, modes] of [
  ['tmp', '/tmp', FS_MODES],
  ['dev-shm', '/dev/shm', START_MODES],
  ['write-grant', null, FS_MODES],
]) {
  for (const how of ['direct', 'ldso', 'execveat', 'mmap', 'script']) {
    add({
      id: `E9.${how}-${where}`,
      covers: how === 'direct' || how === 'script' ? 'R1 exec control (W^X)' : 'E9 (W^X)',
      modes,
      setup(t) {
        const target = dir ?? t.mkdir('w');
        return { policy: { fs: dir ? WX : { ...WX, write: [target] } }, argv: ['exec', how, target, MARK] };
      },
    });
  }
}
for (const how of ['direct', 'ldso', 'mmap']) {
  add({
    id: `E9.${how}-noexec-path`,
    covers: 'E9 (a writable path listed in fs.noexec)',
    setup(t) {
      const w = t.mkdir('w');
      const bin = t.mkdir('w/bin');
      return { policy: { fs: { write: [w], noexec: [bin] } }, argv: ['exec', how, bin, MARK] };
    },
  });
}
for (const how of ['ldso', 'mmap']) {
  add({
    id: `E9.${how}-read-grant`,
    covers: 'E9 (a file in a read grant)',
    setup(t) {
      const d = t.mkdir('downloads');
      fs.copyFileSync(fs.existsSync('/usr/bin/echo') ? '/usr/bin/echo' : '/bin/echo', `${d}/tool`);
      fs.chmodSync(`${d}/tool`, 0o755);
      // In ephemeral mode every visible directory is writable, and so may run programs
      // unless W^X says otherwise.
      const fsPolicy = t.mode === 'ephemeral' ? { ...WX, read: [d] } : { read: [d] };
      return { policy: { fs: fsPolicy }, argv: ['exec', `${how}-existing`, `${d}/tool`, MARK] };
    },
  });
}
for (const how of ['ldso', 'mmap']) {
  add({
    id: `E9.${how}-writable-volume`,
    covers: 'E9 (a writable volume)',
    setup: (t) => ({ policy: { fs: { ...WX, volumes: [{ source: t.mkdir('v'), target: '/vol' }] } }, argv: ['exec', how, '/vol', MARK] }),
  });
}
// W^X for the file, not for one of its paths: written through a writable alias of a
// directory that is executable elsewhere in the view.
add({
  id: 'E9.wx-exec-grant-with-writable-volume-alias',
  covers: 'E9 (W^X: the same directory writable at one place, executable at another)',
  mayRefuse: true,
  setup(t) {
    const d = t.mkdir('tools');
    return { policy: { fs: { ...WX, exec: [d], volumes: [{ source: d, target: '/w' }] } }, argv: ['execvia', '/w', d, MARK] };
  },
});
add({
  id: 'E9.wx-exec-subdir-with-writable-volume-alias',
  covers: 'E9 (W^X: an exec grant inside a writable volume\'s source)',
  mayRefuse: true,
  setup(t) {
    const d = t.mkdir('proj');
    const bin = t.mkdir('proj/bin');
    return { policy: { fs: { ...WX, exec: [bin], volumes: [{ source: d, target: '/w' }] } }, argv: ['execvia', '/w/bin', bin, MARK] };
  },
});
add({
  id: 'E9.wx-write-grant-inside-exec-grant',
  covers: 'E9 (W^X: a write grant inside an exec grant)',
  mayRefuse: true,
  setup(t) {
    const d = t.mkdir('proj');
    const out = t.mkdir('proj/out');
    return { policy: { fs: { ...WX, exec: [d], write: [out] } }, argv: ['execvia', out, out, MARK] };
  },
});
for (const how of ['direct', 'ldso', 'mmap']) {
  add({
    id: `E9.ephemeral-system-dir-${how}`,
    covers: 'E9 (ephemeral /usr overlay, W^X)',
    modes: ['ephemeral'],
    setup: () => ({ policy: { fs: WX }, argv: ['exec', how, '/usr/local/bin', MARK] }),
  });
}
// Only host root may set vm.memfd_noexec for a sandbox; elsewhere W^X says so in a caveat.
const memfdCaveat = (c) => c.code === 'MEMFD_EXEC';
add({ id: 'W5.memfd-execveat', covers: 'W5', modes: START_MODES, excuse: memfdCaveat, setup: () => ({ policy: { fs: WX }, argv: ['exec', 'memfd', '-', MARK] }) });
add({ id: 'W5.memfd-proc-path', covers: 'W5', modes: START_MODES, excuse: memfdCaveat, setup: () => ({ policy: { fs: WX }, argv: ['exec', 'memfd-proc', '-', MARK] }) });

// ---------------------------------------------------------------------------------------
// Network: the default (none) and an allow-list refuse everything else, every protocol.

const direct = [
  ['tcp', '127.0.0.1', 'tcp4'],
  ['tcp', '::1', 'tcp6'],
  ['tcp', '0.0.0.0', 'tcp4'],
  ['tcp', 'host4', 'tcp4'],
  ['tcp', 'host6', 'tcp6'],
  ['udp', '127.0.0.1', 'udp4'],
  ['udp', '::1', 'udp6'],
  ['udp', 'host4', 'udp4'],
  ['mptcp', '127.0.0.1', 'tcp4'],
  ['mptcp', 'host4', 'tcp4'],
  ['sctp', 'host4', 'tcp4'],
];
// The host's own addresses; a host without a global IPv6 address tries ::1 instead.
const addr = (t, h) => (h === 'host4' ? t.env.hostAddrs.v4[0] ?? '127.0.0.1' : h === 'host6' ? t.env.hostAddrs.v6[0] ?? '::1' : h);
for (const [proto, host, port] of direct) {
  add({
    id: `NET.${proto}-${host}`,
    covers: 'R1 sockets past the network policy',
    setup(t) {
      return { policy: {}, argv: ['net', proto, addr(t, host), t.env[port], t.token] };
    },
  });
}
for (const [kind, host, port] of [
  ['connect', '127.0.0.1', 'tcp4'],
  ['get', '127.0.0.1', 'tcp4'],
  ['socks5', '127.0.0.1', 'tcp4'],
  ['socks4', '127.0.0.1', 'tcp4'],
  ['connect', '[::1]', 'tcp6'],
  ['connect', 'host4', 'tcp4'],
  ['socks5name', 'localhost', 'tcp4'],
]) {
  add({
    id: `NET.proxy-${kind}-${host.replace(/[[\]]/g, '')}-unlisted`,
    covers: 'F10 allow-list (a destination not listed)',
    modes: ['allowlist'],
    setup(t) {
      return { policy: {}, argv: ['proxy', kind, addr(t, host), t.env[port], t.token] };
    },
  });
}

// E10: unspecified and other spellings of loopback when loopback is denied.
const E10_POLICY = { allow: ['0.0.0.0/0', '::/0'], deny: ['127.0.0.0/8', '[::1]'] };
for (const [kind, host, port] of [
  ['connect', '0.0.0.0', 'tcp4'],
  ['connect', '0', 'tcp4'],
  ['connect', '[::ffff:0.0.0.0]', 'tcp4'],
  ['connect', '[::]', 'tcp6'],
  ['connect', '[::0]', 'tcp6'],
  ['get', '0.0.0.0', 'tcp4'],
  ['socks5', '0.0.0.0', 'tcp4'],
  ['socks5name', '0.0.0.0', 'tcp4'],
  ['socks5', '::', 'tcp6'],
  ['socks5', '::ffff:0.0.0.0', 'tcp4'],
  ['socks4', '0.0.0.0', 'tcp4'],
  ['connect', '127.0.0.1', 'tcp4'],
  ['connect', '127.0.0.2', 'tcp4'],
  ['connect', '127.1', 'tcp4'],
  ['connect', '2130706433', 'tcp4'],
  ['connect', '0x7f000001', 'tcp4'],
  ['connect', '0177.0.0.1', 'tcp4'],
  ['connect', '[::ffff:127.0.0.1]', 'tcp4'],
  ['connect', '[::ffff:7f00:1]', 'tcp4'],
  ['connect', '[::1]', 'tcp6'],
  ['connect', 'localhost', 'tcp4'],
  ['socks5name', 'localhost', 'tcp4'],
]) {
  add({
    id: `E10.${kind}-${host.replace(/[[\]]/g, '')}`,
    covers: host.includes('0.0.0.0') || host === '0' || host.startsWith('[::') || host === '::' ? 'E10' : 'E10 (spellings of a denied loopback)',
    modes: START_MODES,
    setup(t) {
      return { policy: { network: E10_POLICY }, argv: ['proxy', kind, host, t.env[port], t.token] };
    },
  });
}
add({
  id: 'E10.bare-ipv6-deny-rule',
  covers: 'E10 (a bare IPv6 rule with a port)',
  modes: START_MODES,
  mayRefuse: true,
  setup(t) {
    return { policy: { network: { allow: ['0.0.0.0/0', '::/0'], deny: ['127.0.0.0/8', `::1:${t.env.tcp6}`] } }, argv: ['proxy', 'connect', '[::1]', t.env.tcp6, t.token] };
  },
});
// W9: names that resolve to sensitive addresses, allowed by name only. (Names that
// resolve to private ranges or the host's own addresses need a resolver the test controls;
// the host's own name resolves differently from machine to machine, so it is not used.)
for (const name of ['localhost', 'ip6-localhost', 'localhost.']) {
  add({
    id: `W9.allowed-name-resolving-to-loopback-${name.replace(/\.$/, '-dot')}`,
    covers: 'W9',
    modes: START_MODES,
    setup(t) {
      const port = name === 'ip6-localhost' ? t.env.tcp6 : t.env.tcp4;
      return { policy: { network: { allow: [`${name}:${port}`] } }, argv: ['proxy', 'connect', name, port, t.token] };
    },
  });
}

// W9 with a resolver the test controls (added by the outside review of the proxy): an
// allowed name whose DNS answer is a private, shared, link-local, metadata, NAT64 or
// unique-local address, or this host's own address, is refused (403) unless a rule names
// that address; `rebind` answers a public address first and loopback after. Root only: the
// caller runs in a private mount namespace whose resolv.conf names a small DNS server on a
// loopback address, answering every A/AAAA question with the case's addresses (TTL 0).
const ANSWERING_DNS = `
import ipaddress, socket, struct, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((sys.argv[1], 53))
answers = [ipaddress.ip_address(a) for a in sys.argv[2:]]
print("up", flush=True)
asked = 0
while True:
    q, peer = u.recvfrom(512)
    i = 12
    while q[i]: i += q[i] + 1
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    ip = answers[min(asked, len(answers) - 1)]
    if qtype == 1: asked += 1
    rr = b""
    if (qtype, ip.version) in ((1, 4), (28, 6)):
        rr = b"\\xc0\\x0c" + struct.pack(">HHIH", qtype, 1, 0, len(ip.packed)) + ip.packed
    u.sendto(q[:2] + b"\\x81\\x80" + struct.pack(">HHHH", 1, 1 if rr else 0, 0, 0) + q[12:i + 5] + rr, peer)
`;
const RESOLVED_RUNS = `
const corral = require(process.argv[1]);
const [probe, probeDir, name, port, token, rounds] = process.argv.slice(2);
(async () => {
  const out = [];
  for (let i = 0; i < Number(rounds); i++) {
    const policy = { fs: { exec: [probeDir] }, network: { allow: [name + ':' + port] }, timeout: '30s' };
    const r = await corral.run(policy, [probe, 'run', 'proxy', 'connect', name, port, token]);
    out.push({ stdout: String(r.stdout).trim(), violations: (r.violations || []).map((v) => v.reason) });
  }
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
})().catch((e) => { process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) })); process.exit(1); });
`;
for (const [shape, answers, port] of [
  ['rfc1918-10', ['10.1.2.3'], 'tcp4'],
  ['rfc1918-172', ['172.16.0.1'], 'tcp4'],
  ['rfc1918-192', ['192.168.1.1'], 'tcp4'],
  ['cgnat', ['100.64.0.1'], 'tcp4'],
  ['metadata', ['169.254.169.254'], 'tcp4'],
  ['azure', ['168.63.129.16'], 'tcp4'],
  ['this-network', ['0.1.2.3'], 'tcp4'],
  ['unspecified', ['0.0.0.0'], 'tcp4'],
  ['loopback-other', ['127.3.4.5'], 'tcp4'],
  ['host-address', ['HOST4'], 'tcp4'],
  ['ula-metadata', ['fd00:ec2::254'], 'tcp6'],
  ['v6-loopback', ['::1'], 'tcp6'],
  ['mapped-loopback', ['::ffff:127.0.0.1'], 'tcp4'],
  ['nat64-metadata', ['64:ff9b::a9fe:a9fe'], 'tcp6'],
  ['rebind', ['198.51.100.7', '127.0.0.1'], 'tcp4'],
]) {
  add({
    id: `W9.resolved-${shape}`,
    covers: 'W9 (a resolver the test controls)',
    modes: ['allowlist'],
    identities: ['root'],
    noProbeLine: true,
    setup(t) {
      const host4 = t.env.hostAddrs.v4[0];
      if (answers.includes('HOST4') && !host4) return { skip: 'this host has no global IPv4 address' };
      const ips = answers.map((a) => (a === 'HOST4' ? host4 : a));
      return {
        policy: {},
        argv: ['proxy', 'connect', 'svc.corral-test', t.env[port], t.token],
        run: async () => {
          const addr = `127.77.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
          const dns = require('node:child_process').spawn('python3', ['-c', ANSWERING_DNS, addr, ...ips], { stdio: ['ignore', 'pipe', 'inherit'] });
          t.cleanup(() => dns.kill('SIGKILL'));
          await new Promise((res) => dns.stdout.once('data', res));
          const resolv = t.file('resolv.conf', `nameserver ${addr}\noptions timeout:2 attempts:1\n`);
          const script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"';
          const rounds = shape === 'rebind' ? 2 : 1;
          const args = ['-m', 'sh', '-c', script, resolv, process.execPath, '-e', RESOLVED_RUNS, t.engine.opts.pkg, t.env.probe, t.env.probeDir, 'svc.corral-test', String(t.env[port]), t.token, String(rounds)];
          t.runs = await execJson('resolver runner', 'unshare', args, { timeout: 120000 });
          return { stdout: '', stderr: '', exitCode: 0, signal: null, caveats: [] };
        },
      };
    },
    witness(t) {
      const f = [];
      // The first round of `rebind` goes to a public address: only the last must be refused.
      const judged = shape === 'rebind' ? (t.runs ?? []).slice(-1) : t.runs;
      for (const run of judged ?? []) {
        if (!/reply=HTTP\/1\.1 403/.test(run.stdout)) f.push(`svc.corral-test resolving to ${ips.join(', ')} was not refused: ${run.stdout} ${run.violations.join('; ')}`.slice(0, 300));
      }
      return f;
    },
  });
}

// Landlock TCP port rules, and the protocols they cannot see.
const PORTS = { mode: 'host', bindPorts: [], connectPorts: [] };
for (const [proto, host, port] of [
  ['mptcp', '127.0.0.1', 'tcp4'],
  ['mptcp', '::1', 'tcp6'],
  ['mptcp', 'host4', 'tcp4'],
  ['tcp', '127.0.0.1', 'tcp4'],
  ['tcp', '::1', 'tcp6'],
  ['udp', '127.0.0.1', 'udp4'],
  ['udp', '::1', 'udp6'],
  ['udplite', '127.0.0.1', 'udp4'],
  ['sctp', '127.0.0.1', 'tcp4'],
  ['tcp-fastopen', '127.0.0.1', 'tcp4'],
  ['tcp-fastopen', '::1', 'tcp6'],
]) {
  add({
    id: `MPTCP.${proto}-connect-${host}`,
    covers: proto === 'mptcp' ? 'MPTCP under port rules' : proto === 'tcp' ? 'F10 Landlock port rules' : proto === 'tcp-fastopen' ? 'F10 port rules (TCP Fast Open connects in sendto)' : 'MPTCP (other protocols the port rules cannot see)',
    modes: START_MODES,
    excuse: (c) => c.code === 'LANDLOCK_NO_NET',
    setup(t) {
      return { policy: { network: PORTS }, argv: ['net', proto, addr(t, host), t.env[port], t.token] };
    },
  });
}
for (const proto of ['mptcp', 'mptcp6', 'tcp', 'tcp6']) {
  add({
    id: `MPTCP.${proto}-bind`,
    covers: proto.startsWith('mptcp') ? 'MPTCP under port rules' : 'F10 Landlock port rules',
    modes: START_MODES,
    excuse: (c) => c.code === 'LANDLOCK_NO_NET',
    setup: () => ({ policy: { network: PORTS }, argv: ['bind', proto, 20000 + Math.floor(Math.random() * 20000)] }),
  });
}
for (const proto of ['tcp', 'tcp6', 'mptcp']) {
  add({
    id: `MPTCP.listen-without-bind-${proto}`,
    covers: 'F10 Landlock port rules (listen() binds a port implicitly)',
    modes: START_MODES,
    excuse: (c) => c.code === 'LANDLOCK_NO_NET',
    setup: () => ({ policy: { network: { mode: 'host', bindPorts: [] } }, argv: ['listen', proto] }),
  });
}
// Found by the outside review of the socket gate (attacker2, 2026-11-30): listen() is
// checked on the port the socket's name shows, which after a failed connect is the old
// source port of a port the kernel already released; listen() then binds a fresh one.
for (const shape of ['tcp', 'tcp6', 'tcp-unspec']) {
  add({
    id: `MPTCP.listen-after-failed-connect-${shape}`,
    covers: 'F10 Landlock port rules (listen() on a socket a failed connect left with a stale name)',
    modes: START_MODES,
    excuse: (c) => c.code === 'LANDLOCK_NO_NET',
    setup: () => ({ policy: { network: { mode: 'host', bindPorts: [] } }, argv: ['listen-stale', shape] }),
  });
}
add({
  id: 'MPTCP.connect-other-port-than-allowed',
  covers: 'MPTCP under port rules (one port allowed)',
  modes: START_MODES,
  setup(t) {
    return { policy: { network: { mode: 'host', connectPorts: [t.env.allowed] } }, argv: ['net', 'mptcp', '127.0.0.1', t.env.tcp4, t.token] };
  },
});

// Socket families and types the default profile refuses.
for (const [name, family, type, proto] of [
  ['packet', 17, 3, 0],
  ['raw-icmp', 2, 3, 1],
  ['raw6', 10, 3, 58],
  ['packet-dgram', 17, 2, 0],
  ['vsock', 40, 1, 0],
  ['alg', 38, 5, 0],
  ['netlink-audit', 16, 3, 9],
  ['netlink-uevent', 16, 2, 15],
  ['netlink-sock-diag', 16, 3, 4],
  ['pf-key', 15, 3, 2],
  ['xdp', 44, 3, 0],
  ['tipc', 30, 4, 0],
  ['can', 29, 3, 1],
  ['bluetooth', 31, 1, 0],
]) {
  add({ id: `SOCK.${name}`, covers: 'R1 raw and other sockets', modes: START_MODES, setup: () => ({ policy: {}, argv: ['socket', family, type, proto] }) });
}

// ---------------------------------------------------------------------------------------
// Kernel interfaces the default profile refuses.

for (const call of [
  'unshare-user', 'unshare-mount', 'unshare-net', 'unshare-all', 'clone-newuser', 'clone-newns', 'clone3-newuser',
  'mount-tmpfs', 'remount-usr-rw', 'umount-proc', 'fsopen', 'open_tree', 'mount_setattr', 'move_mount', 'pivot_root',
  'chroot', 'setns-user', 'keyctl', 'add_key', 'request_key', 'bpf-map', 'bpf-prog', 'perf_event_open', 'io_uring_setup',
  'userfaultfd', 'fanotify_init', 'ptrace-traceme', 'ptrace-attach', 'process_vm_readv', 'kcmp', 'pidfd_getfd',
  'name_to_handle_at', 'open_by_handle_at', 'init_module', 'finit_module', 'kexec_load', 'syslog', 'acct', 'swapoff',
  'settimeofday', 'clock_settime', 'sethostname', 'personality-exec', 'iopl', 'ioperm', 'x32-unshare', 'x32-mount',
  'int80-getpid', 'int80-unshare',
]) {
  add({ id: `SYS.${call}`, covers: 'R1 mount/unshare/userns/keyctl/bpf/perf/io_uring', modes: START_MODES, setup: () => ({ policy: {}, argv: ['sys', call] }) });
}
// The permissive profile lifts the container deny-list, but no user namespace (which would
// hold CAP_SETFCAP over files an idmapped grant stores for the caller) and no mount.
for (const call of ['unshare-user', 'clone-newuser', 'unshare-mount', 'mount-tmpfs', 'open_tree', 'fsopen', 'io_uring_setup']) {
  add({ id: `SYS.permissive-${call}`, covers: 'R1 userns/mount under the permissive seccomp profile', modes: START_MODES, setup: () => ({ policy: { seccomp: 'permissive' }, argv: ['sys', call] }) });
}
for (const op of ['tiocsti', 'tiocsti-hi', 'tioclinux']) {
  add({ id: `TTY.${op}-own-pty`, covers: 'R1 TIOCSTI', modes: START_MODES, setup: () => ({ policy: {}, argv: ['tty', op, 'own'] }) });
}

// W1: the caller's terminal, through the CLI: on stdin with stdout redirected, and on
// stdout with stdin redirected (`echo x | corral run …` in a terminal).
for (const [op, fd] of [
  ['tiocsetd', 0],
  ['tcsets', 0],
  ['tiocswinsz', 0],
  ['tiocsti', 0],
  ['nonblock', 0],
  ['sctty', 0],
  ['tiocsetd', 1],
  ['tiocswinsz', 1],
  ['tiocsti', 1],
]) {
  add({
    id: `W1.${op}-caller-terminal${fd ? '-on-stdout' : ''}`,
    covers: op === 'tiocsti' ? 'R1 TIOCSTI (caller terminal)' : 'W1',
    modes: ['cli'],
    // A line discipline that swallows output can eat the probe's own line.
    noProbeLine: true,
    setup(t) {
      return {
        policy: {},
        argv: ['tty', op, fd],
        run: async () => {
          const r = await exec('python3', ['-c', PTY_WITNESS, process.execPath, path.join(t.engine.opts.pkg, 'dist', 'cli.js'), t.env.probeDir, t.env.probe, op, String(fd), `#${t.token}`], { timeout: 30000 });
          let w;
          try {
            w = JSON.parse(r.stdout);
          } catch {
            throw new Error(`pty witness failed: ${r.stdout} ${r.stderr}`);
          }
          t.pty = w;
          return { stdout: w.stdout, stderr: w.stderr, exitCode: w.status, signal: null, caveats: [] };
        },
      };
    },
    witness(t) {
      const f = [];
      if (!t.pty) return f;
      const { before, after, pending } = t.pty;
      for (const k of Object.keys(before)) if (JSON.stringify(before[k]) !== JSON.stringify(after[k])) f.push(`caller's terminal ${k} changed: ${JSON.stringify(before[k])} → ${JSON.stringify(after[k])}`);
      if (pending) f.push(`input injected into the caller's terminal: ${JSON.stringify(pending)}`);
      return f;
    },
  });
}

// Reports are attack surface: the overlay review the CLI prints before asking to commit.
add({
  id: 'RESULT.review-shows-control-characters',
  covers: 'Results: names with control characters in the change review',
  modes: ['cli'],
  witnessOnly: true,
  setup(t) {
    const d = t.mkdir('proj');
    // Erases the line above and forges a harmless-looking one.
    const name = `${d}/x\u001b[1A\u001b[2K\r  M  README.md (3 B)\nhidden`;
    return {
      policy: {},
      argv: [],
      run: async () => {
        const r = await exec(
          process.execPath,
          [path.join(t.engine.opts.pkg, 'dist', 'cli.js'), 'run', '--write', d, '--write-mode', 'overlay', '--exec', t.env.probeDir, '--', t.env.probe, 'run', 'plant', name, 'x', `#${t.token}`],
          { timeout: 30000 },
        );
        t.review = r.stderr;
        return { stdout: r.stdout, stderr: r.stderr, exitCode: r.status, signal: r.signal, caveats: [] };
      },
    };
  },
  witness(t) {
    const raw = [...(t.review ?? '')].filter((ch) => (ch < ' ' && ch !== '\n') || ch === '\u007f');
    const forged = /\n\s+M\s+\S*README\.md/.test(t.review ?? '') && !/x\\/.test(t.review ?? '');
    const f = [];
    if (raw.length) f.push(`the review printed ${raw.length} raw control characters from a file name: ${JSON.stringify(t.review.slice(0, 300))}`);
    if (forged) f.push('a file name forged a line of the review');
    return f;
  },
});

// ---------------------------------------------------------------------------------------
// Processes, init, other tenants.

add({
  id: 'PID1.capabilities',
  covers: 'pid 1 capabilities',
  modes: START_MODES,
  setup: () => ({ policy: {}, argv: ['pid1', 'caps'] }),
});
add({
  id: 'PID1.cmdline',
  covers: '/proc/1/cmdline',
  modes: START_MODES,
  setup: (t) => ({ policy: {}, argv: ['pid1', 'cmdline', t.env.helper, t.env.pid] }),
});
add({ id: 'PID1.access', covers: 'R1 /proc (init)', setup: () => ({ policy: {}, argv: ['pid1', 'access'] }) });
add({
  id: 'PID1.access-allowlist-bridge',
  covers: 'R1 /proc (init holding the proxy socket)',
  modes: ['allowlist'],
  setup: () => ({ policy: {}, argv: ['pid1', 'access'] }),
});
add({ id: 'W7.proc-mem-of-another-process', covers: 'W7', modes: START_MODES, setup: () => ({ policy: {}, argv: ['memsib'] }) });
add({
  id: 'W7.clone-reads-clone',
  covers: 'W7 (copy-on-write clones)',
  modes: ['fork'],
  setup: () => ({ policy: {}, argv: ['clonemem', '/tmp'], runOpts: { clones: 2 } }),
});
add({
  id: 'PID1.signals',
  covers: 'R1 init (signals to pid 1: stop, terminate, a forged SIGCHLD)',
  modes: ['cold', 'pool', 'fork', 'allowlist'],
  setup: () => ({ policy: { timeout: '10s' }, argv: ['pid1sig'] }),
  witness(t, { result, error }) {
    if (error) return [`the run failed instead of reporting the command's exit: ${error.code ?? ''} ${error.message}`.slice(0, 200)];
    if (result?.timedOut) return ['the command exited at once but the run ended only at its timeout (init stopped serving)'];
    if (result && result.exitCode !== 0) return [`the run reported exit ${result.exitCode}, signal ${result.signal}, not the command's 0`];
    return [];
  },
});
add({
  id: 'TENANT.signal-host-process',
  covers: 'R1 signal outside',
  modes: START_MODES,
  setup: (t) => ({ policy: {}, argv: ['kill', t.env.victimPid] }),
  witness: (t) => (t.w.alive() ? [] : ['the host victim process is gone']),
});
add({
  id: 'TENANT.kill-everything',
  covers: 'R1 signal outside (kill -1)',
  // The probe kills itself too; only the witnesses can tell.
  noProbeLine: true,
  // Started as a clone, it may kill its own template (same sandbox, same tenant) before the
  // template has answered the fork: fork() then fails, which is no escape.
  mayRefuse: true,
  async setup(t) {
    const v = t.engine.corral.spawn({}, ['/bin/sh', '-c', 'echo up; exec sleep 60']);
    await new Promise((res) => v.stdout.once('data', res));
    t.victimSandbox = v;
    let ended = false;
    v.wait().then(() => (ended = true));
    t.victimEnded = () => ended;
    t.cleanup(async () => {
      v.kill('SIGKILL');
      await v.wait();
    });
    return { policy: {}, argv: ['killall'] };
  },
  witness(t) {
    const f = [];
    if (!t.w.alive()) f.push('the host victim process is gone');
    if (t.victimEnded()) f.push('the victim sandbox beside the attacker ended');
    return f;
  },
});
add({
  id: 'TENANT.pool-leftovers',
  covers: 'Leftovers of one run are inputs to the next',
  modes: ['pool'],
  setup(t) {
    return {
      policy: {},
      argv: ['leftover', 'check', t.token],
      run: async (t2, policy) => {
        const pool = new t.engine.corral.Pool(policy, { size: 1, maxSize: 1 });
        try {
          await pool.run([t.env.probe, 'run', 'leftover', 'write', t.token]);
          return await pool.run([t.env.probe, 'run', 'leftover', 'check', t.token]);
        } finally {
          await pool.close();
        }
      },
    };
  },
});
// A template is the sandboxed command: whatever it sends over the fork channel must not
// crash, stall or grow the caller. Each runs in a Node process of its own, so a crash is
// seen rather than suffered.
for (const kind of ['dirfd', 'devzero', 'nofds', 'extrafds', 'unknownid', 'garbage', 'notjson', 'twice', 'exitflood']) {
  add({
    id: `TENANT.hostile-template-${kind}`,
    covers: 'R7 a template that breaks the fork protocol',
    modes: ['fork'],
    noProbeLine: true,
    setup(t) {
      return { policy: {}, argv: [], run: () => hostileCaller(t, kind, 1) };
    },
    witness(t, { result }) {
      const o = t.caller;
      if (!o) return [`the caller printed nothing: ${result?.stderr ?? ''}`];
      const f = [];
      if (!o.survived) f.push(`the caller died: ${o.status} ${o.signal ?? ''} ${o.stderr ?? ''}`.trim());
      if (o.close === 'timeout') f.push('closing the template never finished');
      if (o.after !== 'after') f.push(`a run after the template failed: ${o.after}`);
      return f;
    },
  });
}
add({
  id: 'TENANT.hostile-template-descriptor-leak',
  covers: 'R7 descriptors per hostile fork',
  modes: ['fork'],
  noProbeLine: true,
  setup(t) {
    return { policy: {}, argv: [], run: () => hostileCaller(t, 'dirfd', 10) };
  },
  witness(t) {
    const o = t.caller;
    if (!o?.survived) return [`the caller died: ${JSON.stringify(o)}`];
    // Ten well-behaved templates first (warming up), then ten that answer with directories.
    return o.leaked > 4 ? [`the caller kept ${o.leaked} more descriptors after 10 forks answered with directory descriptors`] : [];
  },
});
add({
  id: 'LEFTOVER.placeholders-after-caller-killed',
  covers: 'R4 / leftovers: a caller killed mid-run',
  modes: ['cold'],
  noProbeLine: true,
  setup(t) {
    const r = t.mkdir('repo');
    t.mkdir('repo/.git');
    t.canary(`${r}/.git/hooks`);
    t.canary(`${r}/.envrc`);
    const script = `const c = require(process.argv[1]);
      c.spawn({ fs: { write: [process.argv[2]], protect: [process.argv[2] + '/.git/hooks', process.argv[2] + '/.envrc'] } }, ['sleep', '30']);
      setTimeout(() => process.kill(process.pid, 'SIGKILL'), 500);`;
    return {
      policy: {},
      argv: [],
      run: async () => {
        const res = await exec(process.execPath, ['-e', script, t.engine.opts.pkg, r]);
        // Its helper and sandbox die with it; give them a moment to be gone, and the helper
        // a moment to remove what it made (it does once its sandbox is reaped).
        for (let i = 0; i < 100 && require('node:fs').readdirSync('/proc').some((p) => /^\d+$/.test(p) && cmdlineHas(p, r)); i++) await new Promise((res2) => setTimeout(res2, 20));
        for (let i = 0; i < 100 && (fs.existsSync(`${r}/.git/hooks`) || fs.existsSync(`${r}/.envrc`)); i++) await new Promise((res2) => setTimeout(res2, 20));
        return { stdout: '', stderr: res.stderr, exitCode: res.status, signal: res.signal, caveats: [] };
      },
    };
  },
});
// Per-user kernel limits are charged up the user namespace chain: a sandbox's inotify
// instances count against its namespace's owner on the host (the caller, or host root for
// a root caller, whose helper makes the namespace). Init needs one for its carve-outs (the
// empty policy has /etc's), so a command that takes them all stops every later sandbox of
// that caller from starting, and the caller's own host processes from watching files.
add({
  id: 'TENANT.inotify-instances-exhausted',
  covers: 'Tenants: a per-user kernel limit shared with the host and with later sandboxes',
  modes: START_MODES,
  // While it holds them, every sandbox of this user on the machine fails to start.
  solo: true,
  setup(t) {
    t.later(async () => {
      await new Promise((r) => setTimeout(r, 500));
      try {
        const v = await t.engine.corral.run({}, ['/bin/true']);
        t.victim = v.exitCode === 0 ? 'ok' : `exit ${v.exitCode}: ${String(v.stderr).slice(0, 120)}`;
      } catch (e) {
        t.victim = `refused: ${String(e.message).slice(0, 160)}`;
      }
      const h = await exec(t.env.probe, ['run', 'inotify', '1', '0']);
      t.host = /held=1/.test(h.stdout) ? 'ok' : h.stdout.trim().slice(0, 160);
    });
    return { policy: {}, argv: ['inotify', 100000, WAIT] };
  },
  witness(t) {
    const f = [];
    if (t.victim && t.victim !== 'ok') f.push(`a later sandbox of the same caller did not start: ${t.victim}`);
    if (t.host && t.host !== 'ok') f.push(`a host process of the caller's could not get an inotify instance: ${t.host}`);
    return f;
  },
});
// The allow-list proxy serves every sandbox of its caller, capping connections per sandbox
// (128) and per process (a quarter of the caller's descriptor limit). A caller limited to
// 1024 descriptors (a common default) has 256 for all its sandboxes together: two sandboxes
// holding 140 idle connections each leave none for a third. Run in a Node process of its
// own with that limit, so the suite's own limit does not matter.
const TENANT_PROXY = `
const corral = require(process.argv[1]);
const [probe, probeDir, port] = process.argv.slice(2);
(async () => {
  const policy = { fs: { exec: [probeDir] }, network: { allow: ['127.0.0.1:' + port] }, timeout: '40s' };
  const hogs = [0, 1].map(() => corral.spawn(policy, [probe, 'run', 'hogproxy', '140', '30']));
  await Promise.all(hogs.map((h) => new Promise((res) => { h.stdout.once('data', res); setTimeout(res, 15000); })));
  const v = await corral.run(policy, [probe, 'run', 'proxy', 'connect', '127.0.0.1', port, 'victim']);
  for (const h of hogs) { h.kill('SIGKILL'); try { await h.wait(); } catch {} }
  process.stdout.write(JSON.stringify({ victim: String(v.stdout).trim(), violations: v.violations }));
  process.exit(0);
})().catch((e) => { process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) })); process.exit(1); });
`;
add({
  id: 'TENANT.proxy-connections-held-by-two-sandboxes',
  covers: 'Tenants: the allow-list proxy that serves every sandbox of one caller',
  modes: ['allowlist'],
  solo: true,
  noProbeLine: true,
  setup(t) {
    return {
      policy: {},
      argv: ['proxy', 'connect', '127.0.0.1', t.env.allowed, t.token],
      run: async () => {
        const args = ['--nofile=1024:1024', process.execPath, '-e', TENANT_PROXY, t.engine.opts.pkg, t.env.probe, t.env.probeDir, String(t.env.allowed)];
        t.tenants = await execJson('tenant runner', 'prlimit', args, { timeout: 90000 });
        return { stdout: '', stderr: '', exitCode: 0, signal: null, caveats: [] };
      },
    };
  },
  witness(t) {
    if (!t.tenants || /reply=HTTP\/1\.[01] 200/.test(t.tenants.victim)) return [];
    const why = (t.tenants.violations ?? []).map((v) => v.reason).join('; ');
    return [`two sandboxes holding 140 idle proxy connections each (caller limited to 1024 descriptors): a third sandbox's CONNECT to an allowed host failed: ${t.tenants.victim} ${why}`.slice(0, 300)];
  },
});
// Names are resolved on threads shared by every sandbox of the caller: 4 lookups at once per
// sandbox, 64 threads in the process. Against a resolver that never answers (each lookup
// then holds its thread for the resolver's whole timeout, 10 s with glibc's defaults), 16
// sandboxes take every thread, and another sandbox's lookup of a name in /etc/hosts waits
// behind them. Root only: the caller gets a resolver of its own (a private mount namespace
// with its own resolv.conf, naming a silent server on a loopback address).
const TENANT_DNS = `
const corral = require(process.argv[1]);
const net = require('node:net');
const [probe, probeDir, attackers] = process.argv.slice(2);
(async () => {
  const srv = net.createServer((s) => { s.on('error', () => {}); s.end('ok'); });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = String(srv.address().port);
  const victim = async () => {
    const t = Date.now();
    const policy = { fs: { exec: [probeDir] }, network: { allow: ['localhost:' + port, '127.0.0.1:' + port] }, timeout: '60s' };
    const v = await corral.run(policy, [probe, 'run', 'proxy', 'connect', 'localhost', port, 'victim']);
    return { ms: Date.now() - t, out: String(v.stdout).trim() };
  };
  const base = await victim();
  const policy = { fs: { exec: [probeDir] }, network: { allow: ['*.test:80'] }, timeout: '60s' };
  const hogs = Array.from({ length: Number(attackers) }, () => corral.spawn(policy, [probe, 'run', 'lookups', '8', '40']));
  await Promise.all(hogs.map((h) => new Promise((res) => { h.stdout.once('data', res); setTimeout(res, 15000); })));
  await new Promise((r) => setTimeout(r, 2000));
  const under = await victim();
  for (const h of hogs) { h.kill('SIGKILL'); try { await h.wait(); } catch {} }
  srv.close();
  process.stdout.write(JSON.stringify({ base, under }));
  process.exit(0);
})().catch((e) => { process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) })); process.exit(1); });
`;
const SILENT_DNS = `
import socket, sys, threading
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((sys.argv[1], 53))
t = socket.socket(); t.bind((sys.argv[1], 53)); t.listen(64)
held = []
threading.Thread(target=lambda: [held.append(t.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
print("up", flush=True)
while True: u.recv(4096)
`;
add({
  id: 'TENANT.lookups-hold-every-resolver-thread',
  covers: 'Tenants: name resolution shared by every sandbox of one caller',
  modes: ['allowlist'],
  identities: ['root'],
  solo: true,
  noProbeLine: true,
  setup(t) {
    return {
      policy: {},
      argv: ['proxy', 'connect', 'localhost', t.env.allowed, t.token],
      run: async () => {
        const addr = `127.77.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
        const dns = require('node:child_process').spawn('python3', ['-c', SILENT_DNS, addr], { stdio: ['ignore', 'pipe', 'inherit'] });
        t.cleanup(() => dns.kill('SIGKILL'));
        await new Promise((res) => dns.stdout.once('data', res));
        const resolv = t.file('resolv.conf', `nameserver ${addr}\noptions timeout:5 attempts:2\n`);
        const script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"';
        const args = ['-m', 'sh', '-c', script, resolv, process.execPath, '-e', TENANT_DNS, t.engine.opts.pkg, t.env.probe, t.env.probeDir, '32'];
        t.tenants = await execJson('tenant runner', 'unshare', args, { timeout: 120000 });
        return { stdout: '', stderr: '', exitCode: 0, signal: null, caveats: [] };
      },
    };
  },
  witness(t) {
    const u = t.tenants?.under;
    if (!u) return [];
    const ok = /reply=HTTP\/1\.[01] 200/.test(u.out);
    if (ok && u.ms < 5000) return [];
    return [`32 sandboxes asking for names a silent resolver never answers: another sandbox's CONNECT to localhost (in /etc/hosts) ran ${u.ms} ms (alone: ${t.tenants.base.ms} ms; the probe waits 5 s for a reply): ${u.out}`.slice(0, 300)];
  },
});
// The bridge in each sandbox's init splices every proxied connection through two pipes of
// 1 MiB. Pipe capacity is accounted per user (fs.pipe-user-pages-soft, 64 MiB by default),
// and every sandbox of a caller runs as one host user: a sandbox holding ~120 connections
// to its bridge takes it past the limit, and from then on every new pipe of that user,
// another sandbox's or the caller's own, gets 2 pages instead of 16.
add({
  id: 'TENANT.bridge-pipes-shrink-every-pipe',
  covers: 'Tenants: a per-user kernel budget (pipe pages) shared by every sandbox of one caller',
  modes: ['allowlist'],
  solo: true,
  noProbeLine: true,
  setup(t) {
    return {
      policy: {},
      argv: ['pipesz'],
      run: async (_t, policy) => {
        const size = async () => {
          const r = await t.engine.corral.run({ fs: { exec: [t.env.probeDir] } }, [t.env.probe, 'run', 'pipesz']);
          return Number(/pipe_size=(\d+)/.exec(String(r.stdout))?.[1] ?? -1);
        };
        t.before = await size();
        const hog = t.engine.corral.spawn(policy, [t.env.probe, 'run', 'hogproxy', '120', '20']);
        t.cleanup(async () => {
          hog.kill('SIGKILL');
          await hog.wait().catch(() => {});
        });
        await new Promise((res) => {
          hog.stdout.once('data', res);
          setTimeout(res, 15000);
        });
        t.during = await size();
        return { stdout: '', stderr: '', exitCode: 0, signal: null, caveats: [] };
      },
    };
  },
  witness(t) {
    return t.during !== undefined && t.during < t.before
      ? [`while one sandbox held 120 proxied connections, another sandbox's new pipe held ${t.during} bytes (before: ${t.before})`]
      : [];
  },
});
add({ id: 'ENV.caller-secret', covers: 'clean environment', setup: (t) => ({ policy: {}, argv: ['env', Buffer.from(t.env.envSecret).toString('hex')] }) });
add({ id: 'FD.inherited', covers: 'no inherited descriptors', setup: () => ({ policy: {}, argv: ['fds', '0,1,2'] }) });

// ---------------------------------------------------------------------------------------
// W2: default bounds.

add({ id: 'W2.tmp-size', covers: 'W2', setup: (t) => ({ policy: {}, argv: ['size', '/tmp', bound(t)] }) });
add({ id: 'W2.dev-shm-size', covers: 'W2', setup: (t) => ({ policy: {}, argv: ['size', '/dev/shm', bound(t)] }) });
add({
  id: 'W2.overlay-upper-size',
  covers: 'W2 (overlay upper layer)',
  modes: ['overlay', 'ephemeral'],
  setup: (t) => ({ policy: { fs: { write: [t.mkdir('w')] } }, argv: ['size', t.p('w'), bound(t)] }),
});
add({ id: 'W2.disk-covers-tmp', covers: 'F11 disk', setup: () => ({ policy: { limits: { disk: '16M' } }, argv: ['size', '/tmp', 17 << 20] }) });
add({ id: 'W2.disk-covers-dev-shm', covers: 'W2 (--disk covers /dev/shm)', setup: () => ({ policy: { limits: { disk: '16M' } }, argv: ['size', '/dev/shm', 17 << 20] }) });
add({
  id: 'W2.disk-covers-overlay',
  covers: 'F11 disk (overlay layers)',
  modes: ['overlay', 'ephemeral'],
  setup: (t) => ({ policy: { limits: { disk: '16M' }, fs: { write: [t.mkdir('w')] } }, argv: ['size', t.p('w'), 17 << 20] }),
});
add({ id: 'W2.pids-limit', covers: 'F11 pids (every start mode)', modes: START_MODES, setup: () => ({ policy: { limits: { pids: 32 } }, argv: ['pids', 100] }) });
add({
  id: 'W2.output-default-bound',
  covers: 'W2 (output: the caller\'s memory with the empty policy)',
  modes: ['cold'],
  solo: true,
  witnessOnly: true,
  setup: () => ({ policy: {}, argv: ['flood', 160] }),
  witness(t, { result }) {
    const kept = result ? Buffer.byteLength(String(result.stdout)) : 0;
    return kept > 128 << 20 ? [`the caller kept all ${kept} bytes of output (no default cap; outputTruncated ${result.outputTruncated})`] : [];
  },
});
add({ id: 'W2.process-count', covers: 'W2', modes: ['cold'], solo: true, setup: () => ({ policy: { timeout: '60s' }, argv: ['pids', 3000] }) });

// ---------------------------------------------------------------------------------------
// Helpers.

function bound(t) {
  return Math.min(DEFAULT_BOUND, Math.floor(t.env.memTotal / 4));
}

function tokenEntries(dir, token) {
  try {
    return fs.readdirSync(dir).filter((n) => n.includes(token));
  } catch {
    return [];
  }
}

function removeTokenEntries(dir, token) {
  for (const n of tokenEntries(dir, token)) fs.rmSync(path.join(dir, n), { recursive: true, force: true });
}

/** A non-empty file under /etc that only root may read and that corral does not mask. */
function rootOnlyEtcFile() {
  const masked = ['/etc/shadow', '/etc/gshadow', '/etc/sudoers', '/etc/security/opasswd', '/etc/ssl/private', '/etc/krb5.keytab', '/etc/credstore', '/etc/ssh/ssh_host_'];
  const found = [];
  const walk = (d, depth) => {
    if (depth > 3 || found.length) return;
    let names = [];
    try {
      names = fs.readdirSync(d);
    } catch {
      return;
    }
    for (const n of names.sort()) {
      const p = path.join(d, n);
      if (masked.some((m) => p.startsWith(m))) continue;
      let st;
      try {
        st = fs.lstatSync(p);
      } catch {
        continue;
      }
      if (st.isFile() && st.size > 0 && st.uid === 0 && (st.mode & 0o044) === 0) found.push(p);
      else if (st.isDirectory()) walk(p, depth + 1);
      if (found.length) return;
    }
  };
  walk('/etc', 0);
  return found[0];
}

/** Runs `count` hostile templates of `kind` in a fresh Node process; what it saw lands in
 *  t.caller. */
async function hostileCaller(t, kind, count) {
  const r = await exec(process.execPath, ['--expose-gc', '-e', HOSTILE_CALLER, t.engine.opts.pkg, t.env.probe, kind, String(count)]);
  try {
    t.caller = { ...JSON.parse(r.stdout.trim().split('\n').pop()), survived: r.status === 0 };
  } catch {
    t.caller = { survived: false, status: r.status, signal: r.signal, stderr: String(r.stderr).slice(0, 300) };
  }
  return { stdout: '', stderr: r.stderr, exitCode: r.status, signal: r.signal, caveats: [] };
}

const HOSTILE_CALLER = `
const [pkg, probe, kind, count] = process.argv.slice(1);
const c = require(pkg);
const fs = require('fs');
const path = require('path');
const within = (p, ms) => Promise.race([p, new Promise((r) => setTimeout(() => r('timeout'), ms))]);
const fds = () => { gc(); return fs.readdirSync('/proc/self/fd').length; };
const policy = { fs: { exec: [path.dirname(probe)] } };
async function once(argv) {
  const t = await c.template(policy, argv);
  let fork;
  try { fork = await within(t.fork(1).then((cl) => Promise.all(cl.map((x) => x.output()))).then(() => 'ok'), 5000); }
  catch (e) { fork = 'rejected ' + e.code; }
  const close = await within(t.close().then(() => 'closed'), 30000);
  return { fork, close };
}
(async () => {
  const n = Number(count);
  for (let i = 0; i < n && n > 1; i++) await once([probe, 'template', 'fds', '0,1,2']);
  const before = fds();
  let last;
  for (let i = 0; i < n; i++) last = await once([probe, 'evil-template', kind]);
  await new Promise((r) => setTimeout(r, 200));
  const leaked = fds() - before;
  const after = (await c.run({}, ['echo', 'after'])).stdout.trim();
  console.log(JSON.stringify({ ...last, leaked, after }));
  process.exit(0);
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(3); });
`;

/** Runs the CLI with its stdin on a fresh terminal and stdout on a pipe, and reports that
 *  terminal's line discipline, modes, size and pending input before and after. */
const PTY_WITNESS = `
import fcntl, json, os, pty, struct, subprocess, sys, termios, select
node, cli, probedir, probe, op, fd, tag = sys.argv[1:8]
master, slave = pty.openpty()
def state():
    out = {}
    for key, read in (
        ("ldisc", lambda: struct.unpack("i", fcntl.ioctl(slave, termios.TIOCGETD, b"\\0" * 4))[0]),
        ("modes", lambda: termios.tcgetattr(slave)[:4]),
        ("size", lambda: list(struct.unpack("HHHH", fcntl.ioctl(slave, termios.TIOCGWINSZ, b"\\0" * 8))[:2])),
        ("nonblocking", lambda: bool(fcntl.fcntl(slave, fcntl.F_GETFL) & os.O_NONBLOCK)),
    ):
        try:
            out[key] = read()
        except OSError as e:
            out[key] = "error: %s" % e
        except termios.error as e:
            out[key] = "error: %s" % (e,)
    return out
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
before = state()
on_stdin = fd == "0"
def session():
    # As from a shell: the CLI's session has the terminal as its controlling terminal.
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
p = subprocess.run([node, cli, "run", "--no-pty", "--exec", probedir, "--", probe, "run", "tty", op, fd, tag],
                   stdin=slave if on_stdin else subprocess.DEVNULL, stdout=subprocess.PIPE if on_stdin else slave,
                   stderr=subprocess.PIPE, timeout=25, preexec_fn=session)
after = state()
out = p.stdout.decode(errors="replace") if on_stdin else ""
if not on_stdin:
    os.set_blocking(master, False)
    try:
        out = os.read(master, 65536).decode(errors="replace").replace("\\r\\n", "\\n")
    except OSError:
        pass
os.set_blocking(slave, False)
pending = ""
try:
    pending = os.read(slave, 100).decode(errors="replace")
except OSError:
    pass
try:
    fcntl.ioctl(slave, termios.TIOCSETD, struct.pack("i", 0))
except OSError:
    pass
print(json.dumps({"before": before, "after": after, "pending": pending, "status": p.returncode,
                  "stdout": out, "stderr": p.stderr.decode(errors="replace")}))
`;

module.exports = { CASES, START_MODES, FS_MODES };
