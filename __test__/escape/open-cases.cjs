// Escapes that are open today. Runs in: the engine and escape.test.ts (selection only).
//
// The default run (`npm test`) leaves these out; `CORRAL_ESCAPE_OPEN=1` runs only these,
// so a failing test there is an escape that still works. Each entry names a case of
// cases.cjs, optionally narrowed to start modes and identities ('root', 'uid65534'; both
// when absent), and says what got out when it was recorded (H = the trial's host dir).
// A fix deletes its entries here in the same commit: that moves the cases into the suite.
'use strict';

const OPEN = [
  // E1: a set-user-ID file already in a root caller's write grant: the idmapped grant makes
  // host root's files the sandbox root's, and a shared writable mapping changes a file
  // without clearing its set-user-ID bit (write(2) and truncate(2) do clear it).
  { id: 'E1.rewrite-setid-file-by-mapping', identities: ['root'], modes: ['cold', 'pool', 'fork', 'allowlist'], observed: 'W/tool (root, 4755) opened O_RDWR, mmap(MAP_SHARED) and rewritten: the host file kept 4755 with the new content (overlay holds: commit drops set-id bits)' },
  // E4: Unix sockets that appear after planning.
  { id: 'E4.socket-created-later', modes: ['cold', 'pool', 'fork', 'allowlist'], observed: 'stream socket the host created in a write grant after start: connected, token received' },
  { id: 'E4.socket-created-later-read-grant', modes: ['cold', 'pool', 'fork', 'overlay', 'allowlist'], observed: 'the same in a read grant (overlay mode too: read grants are not overlaid)' },
  { id: 'E4.socket-created-later-deep', modes: ['cold', 'pool', 'fork', 'allowlist'], observed: 'the same at D/a/b/c/agent.sock' },
  { id: 'E4.dgram-socket-created-later', modes: ['cold', 'pool', 'fork', 'allowlist'], observed: 'sendto() to a datagram socket created after start: datagram received' },
  { id: 'E4.other-sandbox-proxy-in-host-tmp', observed: 'with --write /tmp, a proxy socket in /tmp/corral-proxy-* is connectable: this build\'s proxies have no path, but a pathname socket a host program (an older corral) makes there later still is' },
  // Landlock TCP port rules and the protocols they cannot see (network: host, bindPorts: [], connectPorts: []).
  { id: 'MPTCP.mptcp-connect-127.0.0.1', observed: 'socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP) connected to 127.0.0.1:PORT' },
  { id: 'MPTCP.mptcp-connect-::1', observed: 'MPTCP over IPv6 connected to [::1]:PORT' },
  { id: 'MPTCP.mptcp-connect-host4', observed: 'MPTCP connected to the host\'s own interface address' },
  { id: 'MPTCP.udp-connect-127.0.0.1', observed: 'UDP sendto/connect+send to 127.0.0.1:PORT delivered, reply came back' },
  { id: 'MPTCP.udp-connect-::1', observed: 'UDP over IPv6 delivered' },
  { id: 'MPTCP.mptcp-bind', observed: 'MPTCP bind + listen on 127.0.0.1 succeeded' },
  { id: 'MPTCP.mptcp6-bind', observed: 'MPTCP bind + listen on ::1 succeeded' },
  { id: 'MPTCP.tcp-fastopen-connect-127.0.0.1', observed: 'found by this suite: connectPorts: [] refuses connect() (EACCES) but sendto(MSG_FASTOPEN) to 127.0.0.1:PORT connects and delivers the data' },
  { id: 'MPTCP.tcp-fastopen-connect-::1', observed: 'the same over IPv6' },
  { id: 'MPTCP.listen-without-bind-tcp', observed: 'found by this suite: bindPorts: [] but listen() on an unbound TCP socket gets an ephemeral port and accepts connections on the host network (Landlock sees bind(), not the implicit bind of listen())' },
  { id: 'MPTCP.listen-without-bind-tcp6', observed: 'the same over IPv6' },
  { id: 'MPTCP.listen-without-bind-mptcp', observed: 'the same with MPTCP' },
  { id: 'MPTCP.connect-other-port-than-allowed', observed: 'connectPorts: [A]: MPTCP connected to another port' },
  // W1: the caller's terminal reaches the command (CLI, stdin a terminal, stdout a pipe).
  { id: 'W1.tiocsetd-caller-terminal', observed: 'TIOCSETD N_NULL on fd 0 succeeded; the caller\'s terminal keeps line discipline 27 after exit, tcgetattr on it then fails EINVAL, and the corral CLI itself died with SIGABRT on exit (status -6)' },
  { id: 'W1.tcsets-caller-terminal', observed: 'tcsetattr (-ECHO -ICANON) on the caller\'s terminal succeeded (Node restores it when the CLI exits)' },
  { id: 'W1.tiocswinsz-caller-terminal', observed: 'TIOCSWINSZ on the caller\'s terminal succeeded; size stays 3x7 after exit' },
  { id: 'W1.nonblock-caller-terminal', observed: 'fcntl(0, F_SETFL, O_NONBLOCK) on the caller\'s terminal succeeded (the open file is the caller\'s own)' },
  { id: 'W1.tiocsetd-caller-terminal-on-stdout', observed: 'stdin a pipe, stdout the terminal: TIOCSETD N_NULL on fd 1 stays after exit (ldisc 27, the probe\'s own output swallowed) and the CLI dies with SIGABRT' },
  { id: 'W1.tiocswinsz-caller-terminal-on-stdout', observed: 'TIOCSWINSZ through fd 1: size stays 3x7' },
  // Init, processes, memory.
  { id: 'PID1.capabilities', observed: '/proc/1/status: CapPrm and CapEff 000001ffffffffff, NoNewPrivs 0' },
  // Not defended: the processes of one command are one
  // tenant; nothing short of an LSM (Yama's ptrace scope, not on these kernels) or each
  // process making itself non-dumpable stops same-uid /proc/PID/mem. Clones do the latter.
  { id: 'W7.proc-mem-of-another-process', modes: ['cold', 'pool'], observed: 'a sibling and the parent both read another process\'s private memory through /proc/PID/mem' },
  // Found by this suite (beyond the issues): carve-outs lost when the host replaces the path
  // during a run. A bind mount on a path goes away in every namespace when the host unlinks
  // or renames over that path, so an atomic save (editor, `git config`) lifts the deny or
  // protect for a sandbox that is still running. Narrowed, not closed: sandbox init watches
  // the directories holding carve-outs and puts each back on what now stands there (these
  // cases then hold), but between the host's rename and init's wake-up the new file is
  // reachable. (A warm pool's sandbox waiting for its command is checked and replaced; two
  // runs sharing a placeholder no longer remove it from under each other.)
  { id: 'F5.deny-replaced-by-rename-during-run', modes: ['cold', 'pool', 'fork', 'overlay', 'allowlist'], observed: 'host wrote D/.env.tmp and renamed it over denied D/.env while the sandbox ran: the new content read in full' },
  { id: 'F5.deny-dir-replaced-during-run', modes: ['cold', 'pool', 'fork', 'overlay', 'allowlist'], observed: 'host swapped denied D/.aws for a new directory by rename: D/.aws/credentials read in full' },
  { id: 'F6.protect-replaced-by-git-during-run', modes: ['cold', 'pool', 'fork', 'allowlist'], observed: 'host rewrote protected R/.git/config as git does (config.lock renamed over it): the sandbox then appended to, truncated, chmod-ed, renamed and linked R/.git/config' },
  { id: 'F5.deny-parent-dir-replaced-during-run', modes: ['cold', 'pool', 'fork', 'overlay', 'allowlist'], observed: 'deny H/.aws/credentials; the host swapped H/.aws for a new directory by rename: the new H/.aws/credentials read in full 1 s later (init watches only the carve-out\'s own directory, whose old inode moved away)' },
  { id: 'F6.protect-parent-dir-replaced-during-run', modes: ['cold', 'pool', 'fork', 'allowlist'], observed: 'protect R/.git/config; the host moved a copy of .git over R/.git: 1 s later the sandbox appended to, truncated, chmod-ed, renamed and linked the new R/.git/config (the ancestor pins and the leaf pin moved away with the old directory)' },
  // Found by the outside review of the path and identity fixes (attacker, 2026-11-30).
  // Hard links: protecting or denying a file warns of its other names, a directory's files do not.
  { id: 'F6.hardlink-into-protected-dir', modes: ['cold', 'pool', 'fork', 'allowlist'], observed: 'R/.git/hooks/pre-commit hard-linked as R/notes.txt beforehand; --protect R/.git/hooks: writing R/notes.txt rewrote the hook on the host, no caveat' },
  { id: 'F5.hardlink-into-denied-dir', observed: 'H/.aws/credentials hard-linked as H/creds.bak; --deny H/.aws: H/creds.bak read in full, no caveat' },
  // W2: default bounds.
];

module.exports = { OPEN };
