// Escapes that are open today. Runs in: the engine and escape.test.ts (selection only).
//
// The default run (`npm test`) leaves these out; `CORRAL_ESCAPE_OPEN=1` runs only these,
// so a failing test there is an escape that still works. Each entry names a case of
// cases.cjs, optionally narrowed to start modes and identities ('root', 'uid65534'; both
// when absent), and says what got out when it was recorded (H = the trial's host dir).
// A fix deletes its entries here in the same commit: that moves the cases into the suite.
'use strict';

const OPEN = [
  // Init, processes, memory.
  // Not defended: the processes of one command are one
  // tenant; nothing short of an LSM (Yama's ptrace scope, not on these kernels) or each
  // process making itself non-dumpable stops same-uid /proc/PID/mem. Clones do the latter.
  { id: 'W7.proc-mem-of-another-process', modes: ['cold', 'pool'], observed: 'a sibling and the parent both read another process\'s private memory through /proc/PID/mem' },
  // Found by this suite (beyond the issues): carve-outs lost when the host replaces the path
  // during a run. A bind mount on a path goes away in every namespace when the host unlinks
  // or renames over that path, so an atomic save (editor, `git config`) lifts the deny or
  // protect for a sandbox that is still running. Narrowed, not closed: sandbox init watches
  // every directory from the grant's root down to each carve-out and puts the carve-outs
  // back on what now stands there (these cases then hold, and so do the host replacing a
  // directory above one), but between the host's rename and init's wake-up the new file is
  // reachable. (A warm pool's sandbox waiting for its command is checked and replaced; two
  // runs sharing a placeholder no longer remove it from under each other.)
  { id: 'F5.deny-replaced-by-rename-during-run', modes: ['cold', 'pool', 'fork', 'overlay', 'allowlist'], observed: 'host wrote D/.env.tmp and renamed it over denied D/.env while the sandbox ran: the new content read in full' },
  { id: 'F5.deny-dir-replaced-during-run', modes: ['cold', 'pool', 'fork', 'overlay', 'allowlist'], observed: 'host swapped denied D/.aws for a new directory by rename: D/.aws/credentials read in full' },
  { id: 'F6.protect-replaced-by-git-during-run', modes: ['cold', 'pool', 'fork', 'allowlist'], observed: 'host rewrote protected R/.git/config as git does (config.lock renamed over it): the sandbox then appended to, truncated, chmod-ed, renamed and linked R/.git/config' },
  // The set-id guard marks the mounts of a root caller's write grants, and those init makes
  // beneath them before the command runs; a pin the warden puts back during the run (the
  // host replaced a pinned directory) is a new copy of the grant's mount that nobody marks.
  { id: 'E1.rewrite-setid-file-by-mapping-in-a-directory-the-host-replaced', identities: ['root'], observed: 'host renamed pinned H/w/sub away and made a new H/w/sub holding a set-user-ID-root tool during the run: once the warden re-pinned it, the sandbox opened the tool O_RDWR and rewrote it through a shared mapping, mode 4755 kept' },
  // W2: default bounds.
];

module.exports = { OPEN };
