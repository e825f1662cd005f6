// Filesystem rules against every path to the same object, and exec control. Runs in: the
// runner (runner.cjs), once per (case, start mode), as root and as uid 65534.
//
// A case is { id, modes?, identities?, setup(t) → { policy, script, check?, later?, refused? } }:
//   script   /bin/sh code run inside
//   later    runs on the host while the command waits (cold, fork) or between a pool's
//            filling and its use (pool); the command waits for a file the runner then
//            creates in `goDir`, a directory the sandbox can see
//   refused  the policy must be refused: a predicate on the error
//   check    verdict on the result (output, caveats): a string that says what went
//            wrong, or '' when the rule held
//   host     verdict on the host after the run, and again after commit() in overlay mode
// `t.dir` is the case's own directory, `t.file/t.mkdir/t.symlink` build it.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const MODES = ['cold', 'pool', 'fork', 'overlay', 'ephemeral'];
const DIRECT = ['cold', 'pool', 'fork'];
const CASES = [];
const add = (c) => CASES.push(c);

const same = (file, want) => {
  let got;
  try {
    got = fs.readFileSync(file, 'utf8');
  } catch (e) {
    got = `<${e.code}>`;
  }
  return got === want ? '' : `${file} is ${JSON.stringify(got)}, not ${JSON.stringify(want)}`;
};
const absent = (p) => (fs.existsSync(p) ? `${p} exists on the host` : '');
const isLink = (p) => {
  try {
    return fs.lstatSync(p).isSymbolicLink() ? '' : `${p} is no longer a symlink`;
  } catch {
    return `${p} is gone`;
  }
};
const none = (...checks) => checks.filter(Boolean).join('; ');
/** The command printed nothing that only the secret holds. */
const unread = (marker) => (r) => (r.stdout.includes(marker) ? `the secret was read: ${r.stdout.trim()}` : '');
const symlinkRefusal = (e) => e.code === 'POLICY_INVALID' && /symlink/.test(e.message);

// ---------------------------------------------------------------------------------------
// A protected path stays what it was under its name, whatever happens above it.

const repo = (t) => {
  const r = t.mkdir('repo');
  t.file('repo/.git/config', '[core]\n');
  t.file('repo/a/b/c/file', 'original\n');
  return r;
};
add({
  id: 'protect-rename-ancestor',
  setup(t) {
    const r = repo(t);
    return {
      policy: { fs: { write: [r], protect: [`${r}/.git/config`, `${r}/.git/hooks`] } },
      script: `cd ${r}; cp -a .git .git.new; echo evil > .git.new/config; mkdir -p .git.new/hooks; echo evil > .git.new/hooks/pre-commit; mv .git .git.orig; mv -T .git.new .git; rm -rf .git; true`,
      host: () => none(same(`${r}/.git/config`, '[core]\n'), absent(`${r}/.git/hooks/pre-commit`), absent(`${r}/.git.orig`)),
    };
  },
});
add({
  id: 'protect-exchange-ancestor',
  setup(t) {
    const r = repo(t);
    t.file('repo/.git.new/config', 'evil\n');
    const py = `import ctypes,os; l=ctypes.CDLL(None,use_errno=True); print(l.syscall(316,-100,b"${r}/.git.new",-100,b"${r}/.git",2), os.strerror(ctypes.get_errno()))`;
    return {
      policy: { fs: { write: [r], protect: [`${r}/.git/config`] } },
      script: `python3 -c '${py}'`,
      host: () => same(`${r}/.git/config`, '[core]\n'),
    };
  },
});
add({
  id: 'protect-rename-ancestor-deeper',
  setup(t) {
    const r = repo(t);
    return {
      policy: { fs: { write: [r], protect: [`${r}/a/b/c/file`] } },
      script: `cd ${r}; mv a/b a/b2; mv a a2; mkdir -p a/b/c; echo evil > a/b/c/file; rm -rf a/b a; true`,
      host: () => none(same(`${r}/a/b/c/file`, 'original\n'), absent(`${r}/a2`)),
    };
  },
});
add({
  id: 'protect-through-a-volume',
  modes: DIRECT,
  setup(t) {
    const p = t.mkdir('p');
    t.file('p/cfg', 'original\n');
    t.file('p/sub/cfg2', 'original\n');
    return {
      policy: { fs: { write: [p], volumes: [{ source: p, target: '/w' }], protect: [`${p}/cfg`, `${p}/sub/cfg2`] } },
      script: 'echo evil >> /w/cfg; echo evil > /w/sub/cfg2; mv /w/sub /w/sub2; rm -f /w/cfg; true',
      host: () => none(same(`${p}/cfg`, 'original\n'), same(`${p}/sub/cfg2`, 'original\n')),
    };
  },
});
add({
  id: 'protect-through-a-symlinked-parent',
  setup(t) {
    const home = t.mkdir('home');
    t.file('home/dotfiles/nvim/init.lua', 'original\n');
    t.symlink('../dotfiles/nvim', 'home/.config/nvim');
    return {
      policy: { fs: { write: [home], protect: [`${home}/.config/nvim/init.lua`] } },
      script: `cd ${home}/.config; rm nvim; mv nvim nvim.old; mkdir nvim; echo EVIL > nvim/init.lua; echo EVIL > ../dotfiles/nvim/init.lua; true`,
      host: () => none(isLink(`${home}/.config/nvim`), same(`${home}/dotfiles/nvim/init.lua`, 'original\n')),
    };
  },
});
add({
  id: 'protect-through-a-link-out-of-every-grant',
  setup(t) {
    const proj = t.mkdir('proj');
    t.file('gitdir/config', '[core]\n');
    t.mkdir('gitdir/hooks');
    t.symlink(t.p('gitdir'), 'proj/.git');
    return {
      policy: { fs: { write: [proj], protect: [`${proj}/.git/hooks`] } },
      script: `cd ${proj}; rm .git; mkdir -p .git/hooks; echo evil > .git/hooks/pre-commit; true`,
      host: () => none(isLink(`${proj}/.git`), absent(t.p('gitdir/hooks/pre-commit'))),
    };
  },
});
add({
  id: 'protect-placeholder-shared-by-two-sandboxes',
  modes: ['cold'],
  setup(t) {
    const r = repo(t);
    const policy = { fs: { write: [r], protect: [`${r}/.git/hooks`] } };
    return {
      policy,
      goDir: r,
      // Another sandbox with the same policy stands on the same placeholder and ends first.
      async later(corral) {
        await corral.run(policy, ['true']);
      },
      script: `echo evil > ${r}/.git/hooks/pre-commit; mkdir -p ${r}/.git/hooks && echo evil > ${r}/.git/hooks/pre-commit; true`,
      host: () => absent(`${r}/.git/hooks/pre-commit`),
    };
  },
});

// ---------------------------------------------------------------------------------------
// A denied path is hidden at every place it appears, whenever it appears.

add({
  id: 'deny-through-a-volume',
  setup(t) {
    const h = t.mkdir('home');
    const m = `SECRET-${t.token}`;
    t.file('home/project/.env', m);
    t.file('home/.aws/credentials', m);
    return {
      policy: {
        fs: {
          read: [h],
          volumes: [{ source: `${h}/project`, target: '/project', readOnly: true }, { source: h, target: '/alias', readOnly: true }],
          deny: [`${h}/project/.env`, `${h}/.aws`],
        },
      },
      script: `cat /project/.env /alias/project/.env ${h}/project/.env /alias/.aws/credentials ${h}/.aws/credentials 2>/dev/null; true`,
      check: unread(m),
    };
  },
});
add({
  id: 'deny-etc-secrets-through-a-volume',
  modes: DIRECT,
  setup: () => ({
    policy: { fs: { volumes: [{ source: '/etc', target: '/hostetc', readOnly: true }] } },
    script: 'cat /hostetc/shadow /hostetc/gshadow 2>/dev/null | head -c 5; true',
    check: (r) => (r.stdout ? `read /hostetc/shadow: ${r.stdout}` : ''),
  }),
});
add({
  id: 'deny-created-after-start',
  modes: ['cold', 'pool', 'fork'],
  setup(t) {
    const d = t.mkdir('d');
    const m = `SECRET-${t.token}`;
    return {
      // A path that does not exist is reserved as a file, or as a directory when written
      // with a trailing slash.
      policy: { fs: { read: [d], deny: [`${d}/.env`, `${d}/.aws/`] } },
      goDir: d,
      later() {
        fs.writeFileSync(`${d}/.env`, m);
        fs.mkdirSync(`${d}/.aws`, { recursive: true });
        fs.writeFileSync(`${d}/.aws/credentials`, m);
      },
      script: `cat ${d}/.env ${d}/.aws/credentials 2>/dev/null; true`,
      check: unread(m),
    };
  },
});
add({
  id: 'deny-created-after-start-in-a-write-grant',
  modes: ['cold', 'pool', 'fork'],
  setup(t) {
    const d = t.mkdir('d');
    const m = `SECRET-${t.token}`;
    return {
      policy: { fs: { write: [d], deny: [`${d}/.env`] } },
      goDir: d,
      later() {
        fs.writeFileSync(`${d}/.env`, m);
      },
      script: `cat ${d}/.env 2>/dev/null; true`,
      check: unread(m),
    };
  },
});
add({
  id: 'deny-replaced-while-a-pool-waits',
  modes: ['pool'],
  setup(t) {
    const d = t.mkdir('d');
    const m = `SECRET-${t.token}`;
    t.file('d/.env', 'OLD=1\n');
    return {
      policy: { fs: { read: [d], deny: [`${d}/.env`] } },
      goDir: d,
      later() {
        fs.writeFileSync(`${d}/.env.tmp`, m);
        fs.renameSync(`${d}/.env.tmp`, `${d}/.env`);
      },
      script: `cat ${d}/.env 2>/dev/null; true`,
      check: unread(m),
    };
  },
});
add({
  // The host replaces carve-outs by rename while the command runs (an editor's atomic
  // save, git's config.lock): the kernel drops their mounts, and sandbox init puts each
  // back on what now stands there. The command waits until it sees them back.
  id: 'carve-outs-put-back-after-a-host-rename',
  modes: DIRECT,
  setup(t) {
    const d = t.mkdir('d');
    const w = t.mkdir('w');
    const m = `SECRET-${t.token}`;
    t.file('d/.env', 'OLD=1\n');
    t.file('d/.aws/credentials', 'OLD=1\n');
    t.file('w/.git/config', '[core]\n');
    return {
      policy: { fs: { read: [d], write: [w], deny: [`${d}/.env`, `${d}/.aws`], protect: [`${w}/.git/config`] } },
      goDir: w,
      later() {
        fs.writeFileSync(`${d}/.env.tmp`, m);
        fs.renameSync(`${d}/.env.tmp`, `${d}/.env`);
        fs.mkdirSync(`${d}/.aws.new`);
        fs.writeFileSync(`${d}/.aws.new/credentials`, m);
        fs.renameSync(`${d}/.aws`, `${d}/.aws.old`);
        fs.renameSync(`${d}/.aws.new`, `${d}/.aws`);
        fs.writeFileSync(`${w}/.git/config.lock`, '[host]\n');
        fs.renameSync(`${w}/.git/config.lock`, `${w}/.git/config`);
      },
      script:
        `for i in $(seq 100); do [ ! -s ${d}/.env ] && [ -z "$(ls -A ${d}/.aws)" ] && [ ! -w ${w}/.git/config ] && echo back && break; sleep 0.1; done; ` +
        `cat ${d}/.env ${d}/.aws/credentials 2>/dev/null; echo x >> ${w}/.git/config 2>/dev/null || echo refused`,
      check: (r) => none(unread(m)(r), r.stdout === 'back\nrefused\n' ? '' : `got ${JSON.stringify(r.stdout)} ${r.stderr}`),
      host: () => same(`${w}/.git/config`, '[host]\n'),
    };
  },
});
add({
  id: 'deny-naming-a-volume-target',
  modes: ['cold'],
  setup(t) {
    const d = t.mkdir('data');
    t.file('data/secret', 'x');
    return {
      policy: { fs: { volumes: [{ source: d, target: '/data', readOnly: true }], deny: ['/data/secret'] } },
      refused: (e) => e.code === 'POLICY_INVALID' && e.field === 'fs.deny[0]' && e.hint.includes(`${d}/secret`),
    };
  },
});

// ---------------------------------------------------------------------------------------
// A grant means the path as written.

const planted = (id, build) =>
  add({
    id,
    modes: ['cold', 'pool', 'fork', 'overlay'],
    setup(t) {
      t.file('secret/id_rsa', `TOPSECRET-${t.token}\n`);
      t.mkdir('proj');
      return { ...build(t), refused: symlinkRefusal };
    },
  });
planted('grant-through-a-planted-symlink', (t) => {
  t.symlink(t.p('secret'), 'proj/out');
  return { policy: { fs: { read: [t.p('proj')], write: [t.p('proj/out')] } } };
});
planted('grant-through-a-relative-symlink', (t) => {
  t.symlink('../secret', 'proj/out');
  return { policy: { fs: { write: [t.p('proj/out')] } } };
});
planted('grant-through-a-symlink-higher-up', (t) => {
  t.symlink(t.dir, 'proj/mid');
  return { policy: { fs: { write: [t.p('proj/mid/secret')] } } };
});
planted('volume-source-through-a-symlink', (t) => {
  t.symlink(t.p('secret'), 'proj/out');
  return { policy: { fs: { volumes: [{ source: t.p('proj/out'), target: '/out' }] } } };
});
add({
  id: 'grant-through-a-symlink-an-earlier-run-planted',
  modes: ['cold'],
  async setup(t, corral) {
    t.file('secret/id_rsa', `TOPSECRET-${t.token}\n`);
    const proj = t.mkdir('proj');
    t.mkdir('proj/out');
    const first = await corral.run({ fs: { write: [proj] } }, ['/bin/sh', '-c', `rm -rf ${proj}/out && ln -s ${t.p('secret')} ${proj}/out`]);
    if (first.exitCode !== 0) throw new Error(`planting run failed: ${first.stderr}`);
    return { policy: { fs: { read: [proj], write: [`${proj}/out`] } }, refused: symlinkRefusal };
  },
});

// ---------------------------------------------------------------------------------------
// Exec control: writable places run programs by every route unless the policy says no;
// a place that may not run programs refuses every route.

const LDSO = fs.existsSync('/lib64/ld-linux-x86-64.so.2') ? '/lib64/ld-linux-x86-64.so.2' : '/lib/ld-linux-aarch64.so.1';
const TRUE = fs.existsSync('/usr/bin/true') ? '/usr/bin/true' : '/bin/true';
/** Shell code that tries every route into `dir` and prints one word per route that ran. */
const routes = (dir) =>
  [
    `cp ${TRUE} ${dir}/prog 2>/dev/null && chmod 755 ${dir}/prog`,
    `${dir}/prog 2>/dev/null && echo direct`,
    `${LDSO} ${dir}/prog 2>/dev/null && echo loader`,
    `python3 -c 'import mmap,sys; f=open(sys.argv[1],"rb"); mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ|mmap.PROT_EXEC); print("mmap")' ${dir}/prog 2>/dev/null`,
  ].join('; ');
add({
  id: 'writable-places-run-programs-by-every-route',
  setup(t) {
    const w = t.mkdir('w');
    return {
      policy: { fs: { write: [w] } },
      script: `${routes(w)}; ${routes('/tmp')}; ${routes('/dev/shm')}; true`,
      check: (r) => {
        const want = 'direct\nloader\nmmap\n'.repeat(3);
        return r.stdout === want ? '' : `ran ${JSON.stringify(r.stdout)}, wanted every route in each place`;
      },
    };
  },
});
add({
  id: 'wx-refuses-every-route',
  modes: ['cold', 'pool', 'fork', 'overlay'],
  setup(t) {
    const w = t.mkdir('w');
    return {
      policy: { fs: { write: [w], execWritable: false } },
      script: `${routes(w)}; ${routes('/tmp')}; ${routes('/dev/shm')}; true`,
      check: (r) => (r.stdout ? `ran: ${r.stdout.trim().split('\n').join(', ')}` : ''),
    };
  },
});
add({
  id: 'wx-ephemeral-system-overlay',
  modes: ['ephemeral'],
  setup: () => ({
    policy: { fs: { execWritable: false } },
    script: `${routes('/usr/local/bin')}; true`,
    check: (r) => (r.stdout ? `ran from /usr/local/bin: ${r.stdout.trim()}` : ''),
  }),
});
add({
  id: 'noexec-path-refuses-every-route',
  modes: ['cold', 'pool', 'fork', 'overlay'],
  setup(t) {
    const w = t.mkdir('w');
    t.mkdir('w/bin');
    return {
      policy: { fs: { write: [w], noexec: [`${w}/bin`, '/tmp'] } },
      script: `${routes(`${w}/bin`)}; ${routes('/tmp')}; mv ${w}/bin ${w}/bin2 && ${routes(`${w}/bin2`)}; echo --; ${routes(w)}`,
      check: (r) => (r.stdout === '--\ndirect\nloader\nmmap\n' ? '' : `ran ${JSON.stringify(r.stdout)}`),
    };
  },
});
add({
  id: 'memfd-exec',
  modes: DIRECT,
  setup: () => ({
    policy: { fs: { execWritable: false } },
    script: `python3 -c 'import os; fd=os.memfd_create("x"); os.write(fd, open("${TRUE}","rb").read()); os.execv("/proc/self/fd/%d" % fd, ["x"])' 2>/dev/null && echo ran; true`,
    check: (r) => (r.stdout.includes('ran') && !r.caveats.some((c) => c.code === 'MEMFD_EXEC') ? 'a memory file ran with no caveat' : ''),
  }),
});

// ---------------------------------------------------------------------------------------
// Granting the whole host; what the command could not reach anyway; bounds; names.

for (const [grant, key] of [['read', 'read'], ['write', 'write'], ['exec', 'exec']]) {
  add({
    id: `grant-the-whole-host-${grant}`,
    modes: DIRECT,
    setup: (t) => {
      t.file('visible', 'yes\n');
      return {
        policy: { fs: { [key]: ['/'] } },
        script: `cat ${t.p('visible')} && ls / >/dev/null && test ! -e /etc/shadow -o ! -s /etc/shadow && echo ok`,
        check: (r) => (r.stdout === 'yes\nok\n' ? '' : `got ${JSON.stringify(r.stdout)} ${r.stderr}`),
      };
    },
  });
}
add({
  id: 'default-bounds',
  modes: DIRECT,
  setup: () => ({
    policy: {},
    script: `df -B1 --output=size /tmp /dev/shm | tail -n +2; bash -c 'ulimit -u'`,
    check: (r) => {
      const [tmp, shm, procs] = r.stdout.trim().split(/\s+/).map(Number);
      return tmp <= 1 << 30 && shm <= 1 << 30 && procs === 2048 ? '' : `sizes ${tmp} ${shm}, processes ${procs}`;
    },
  }),
});
add({
  id: 'disk-limit-covers-every-writable-tmpfs',
  setup: (t) => {
    const w = t.mkdir('w');
    return {
      policy: { fs: { write: [w] }, limits: { disk: '16M' } },
      script: `dd if=/dev/zero of=/tmp/a bs=1M count=12 2>/dev/null; dd if=/dev/zero of=/dev/shm/b bs=1M count=12 2>&1 | grep -c "No space"`,
      check: (r) => (r.stdout.trim() === '1' ? '' : `/tmp and /dev/shm held more than 16M together: ${r.stdout}`),
    };
  },
});
// Fixtures only root can make (paths.test.ts prepares them for every identity).
const fixtures = process.env.CORRAL_PATHS_FIXTURES;
if (fixtures) {
  add({
    id: 'a-socket-the-command-cannot-reach',
    modes: DIRECT,
    setup: () => ({
      policy: { fs: { read: [`${fixtures}/unreachable`] } },
      script: 'echo ran',
      check: (r) => (r.stdout === 'ran\n' ? '' : `exit ${r.exitCode}: ${r.stderr}`),
    }),
  });
  add({
    id: 'overlay-over-a-tree-with-a-mount-inside',
    modes: ['overlay', 'ephemeral'],
    setup: () => {
      const d = `${fixtures}/mounted`;
      return {
        policy: { fs: { write: [d] } },
        script: `echo x > ${d}/new 2>/dev/null || echo refused; ls ${d}`,
        check: (r) =>
          r.stdout === 'refused\nsub\n' && r.caveats.some((c) => c.code === 'OVERLAY_SUBMOUNTS' && c.message.includes(`${d}/sub`))
            ? ''
            : `exit ${r.exitCode} ${JSON.stringify(r.stdout)} ${r.stderr} caveats ${r.caveats.map((c) => c.code)}`,
      };
    },
  });
}

add({
  // The caller's directory under a volume of another tree: that path is not the caller's
  // directory in the sandbox (and need not exist there), so the command starts in /.
  id: 'a-volume-over-the-callers-directory',
  setup: (t) => ({
    policy: { fs: { volumes: [{ source: t.mkdir('other'), target: process.cwd() }] } },
    script: 'pwd',
    check: (r) => (r.stdout === '/\n' ? '' : `exit ${r.exitCode} ${JSON.stringify(r.stdout)} ${r.stderr}`),
  }),
});
add({
  // A volume over the package's own directory: a fork template's Python module shows
  // elsewhere (the runner's argv[2] is the package directory).
  id: 'a-volume-over-the-package',
  setup: (t) => ({
    policy: { fs: { volumes: [{ source: t.mkdir('other'), target: path.dirname(process.argv[2]) }] } },
    script: 'echo ran',
    check: (r) => (r.stdout === 'ran\n' ? '' : `exit ${r.exitCode} ${JSON.stringify(r.stdout)} ${r.stderr}`),
  }),
});
add({
  id: 'corral-names-are-reserved',
  modes: ['cold'],
  setup: (t) => ({
    policy: { fs: { volumes: [{ source: t.mkdir('v'), target: '/.corral-layers' }] } },
    refused: (e) => e.code === 'POLICY_INVALID' && e.field === 'fs.volumes[0].target' && /reserved/.test(e.message),
  }),
});

module.exports = { CASES, MODES };
