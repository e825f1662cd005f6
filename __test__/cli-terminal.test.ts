// The caller's terminal never reaches the command: without a terminal of the sandbox's own
// (stdout redirected, or --no-pty), every standard stream of the CLI that is a terminal is
// relayed through a pipe, so nothing the command does to "its" terminal (modes, size, line
// discipline, pending input) touches the caller's.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cli, hasCommand } from './helpers';

const python = hasCommand('python3');

/** Runs the CLI with the given streams on a fresh pty (`t`) or a pipe (`p`); returns what
 *  the command printed on stdout (or, when stdout is the pty, what the pty showed) and the
 *  pty's line discipline and modes afterwards. */
function onTerminal(streams: string, args: string[]): { out: string; after: string } {
  const script = `
import json, os, pty, subprocess, sys, termios, fcntl, struct
m, s = pty.openpty()
before = termios.tcgetattr(s)
which = sys.argv[1]
io = [s if c == "t" else subprocess.PIPE for c in which]
p = subprocess.Popen(sys.argv[2:], stdin=io[0], stdout=io[1], stderr=io[2])
if io[0] == subprocess.PIPE:
    p.stdin.close()
out = p.stdout.read().decode() if io[1] == subprocess.PIPE else ""
p.wait()
os.set_blocking(m, False)
try:
    shown = os.read(m, 65536).decode(errors="replace")
except BlockingIOError:
    shown = ""
ldisc = struct.unpack("i", fcntl.ioctl(s, termios.TIOCGETD, b"\\0\\0\\0\\0"))[0]
print(json.dumps({"out": out or shown, "after": "ldisc=%d same=%s" % (ldisc, termios.tcgetattr(s) == before)}))
`;
  const r = spawnSync('python3', ['-c', script, streams, process.execPath, cli, ...args], { encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(r.stdout);
}

// The command reports which of its streams are terminals, then tries to take over fd 0/1's
// terminal: line discipline N_NULL (27), raw mode.
const probe = [
  'run',
  '--',
  'python3',
  '-c',
  `
import fcntl, os, struct, sys, termios
print(" ".join("%d:%s" % (fd, "tty" if os.isatty(fd) else "other") for fd in (0, 1, 2)), flush=True)
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSETD, struct.pack("i", 27))
        print("TIOCSETD on", fd, "worked", flush=True)
    except OSError:
        pass
    try:
        a = termios.tcgetattr(fd); a[3] &= ~termios.ECHO; termios.tcsetattr(fd, termios.TCSANOW, a)
        print("tcsetattr on", fd, "worked", flush=True)
    except termios.error:
        pass
`,
];

describe.skipIf(!python)('the caller\'s terminal', () => {
  it('stays the caller\'s when stdin is a terminal and stdout a pipe', () => {
    const r = onTerminal('tpt', probe);
    expect(r.out).toBe('0:other 1:other 2:other\n');
    expect(r.after).toBe('ldisc=0 same=True');
  });

  it('stays the caller\'s when only stdout is a terminal', () => {
    const r = onTerminal('ptp', probe);
    expect(r.out).toContain('0:other 1:other 2:other');
    expect(r.out).not.toContain('worked');
    expect(r.after).toBe('ldisc=0 same=True');
  });

  it('stays the caller\'s with --no-pty on a terminal', () => {
    const r = onTerminal('ttt', ['run', '--no-pty', ...probe.slice(1)]);
    expect(r.out).toContain('0:other 1:other 2:other');
    expect(r.out).not.toContain('worked');
    expect(r.after).toBe('ldisc=0 same=True');
  });
});
