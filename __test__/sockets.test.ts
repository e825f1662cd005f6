// The socket gate: a sandbox reaches a pathname Unix socket only if the policy lists it or
// the sandbox bound it itself, whenever the socket appeared and by whatever path; and
// ordinary socket use (its own servers, descriptor passing, datagrams, TCP) still works.
// Host servers are witnesses that must record nothing. Cold runs and a warm pool.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, Server, Socket } from 'node:net';
import { mkdirSync, symlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { corral, hostDir } from './helpers';

const { run, Pool } = corral;
const py = (code: string) => ['python3', '-c', code];

/** A Unix stream server on the host that records every connection. */
async function witness(path: string): Promise<{ server: Server; hits: () => number }> {
  let hits = 0;
  const server = createServer((s: Socket) => {
    hits++;
    s.end('host secret\n');
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { server, hits: () => hits };
}

// Connects to each path in argv; prints one line per path: "ok <first bytes>" or "errno <n>".
const connectEach = `
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p)
        print("ok", s.recv(64).decode().strip(), flush=True)
    except OSError as e:
        print("errno", e.errno, flush=True)
`;

describe('the socket gate', () => {
  let dir: ReturnType<typeof hostDir>;
  let allowed: Awaited<ReturnType<typeof witness>>;
  beforeAll(async () => {
    dir = hostDir();
    mkdirSync(join(dir.path, 'w'));
    mkdirSync(join(dir.path, 'r', 'a', 'b'), { recursive: true });
    allowed = await witness(join(dir.path, 'r', 'allowed.sock'));
  });
  afterAll(() => {
    allowed.server.close();
    dir.cleanup();
  });

  it('refuses a host socket created in a granted tree after the sandbox started, by every path', async () => {
    const w = join(dir.path, 'w');
    const later = join(w, 'later.sock');
    const deep = join(dir.path, 'r', 'a', 'b', 'later.sock');
    const policy = { fs: { write: [w], read: [join(dir.path, 'r')], volumes: [{ source: w, target: '/alias' }] } };
    // The command waits until the host has made its sockets, then tries them directly,
    // deep in a read grant, through a symlink it plants, a volume alias, /proc/self/fd,
    // and as a datagram.
    const script = `
import os, socket, sys, time
while not os.path.exists(${JSON.stringify(deep)}):
    time.sleep(0.02)
os.symlink(${JSON.stringify(later)}, ${JSON.stringify(join(w, 'link'))})
fd = os.open(${JSON.stringify(later)}, os.O_PATH)
paths = [${JSON.stringify(later)}, ${JSON.stringify(deep)}, ${JSON.stringify(join(w, 'link'))}, "/alias/later.sock", "/proc/self/fd/%d" % fd]
for p in paths:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p); print("ok", p, flush=True)
    except OSError as e:
        print("errno", e.errno, flush=True)
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for send in (lambda: d.sendto(b"x", ${JSON.stringify(join(w, 'later.dgram'))}), lambda: d.sendmsg([b"x"], [], 0, ${JSON.stringify(join(w, 'later.dgram'))})):
    try:
        send(); print("sent", flush=True)
    except OSError as e:
        print("errno", e.errno, flush=True)
`;
    const pending = run(policy, py(script));
    await new Promise((r) => setTimeout(r, 300));
    const a = await witness(later);
    // A datagram server too, then the deep socket, which tells the command to start.
    const dgramPath = join(w, 'later.dgram');
    const receiver = spawn('python3', ['-c', `import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print("bound", flush=True); s.settimeout(8)\ntry: print(s.recv(10))\nexcept OSError: print("nothing")`, dgramPath]);
    let received = '';
    receiver.stdout.on('data', (d) => (received += d));
    while (!received.includes('bound')) await new Promise((r) => setTimeout(r, 20));
    const b = await witness(deep);
    const r = await pending;
    await new Promise((r) => receiver.once('exit', r));
    a.server.close();
    b.server.close();
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(['errno 13', 'errno 13', 'errno 13', 'errno 13', 'errno 13', 'errno 13', 'errno 13']);
    expect(a.hits() + b.hits()).toBe(0);
    expect(received).toBe('bound\nnothing\n');
  }, 30_000);

  it('connects to a listed socket, by its path and through a link to it', async () => {
    const sock = join(dir.path, 'r', 'allowed.sock');
    const before = allowed.hits();
    const policy = { fs: { read: [join(dir.path, 'r')], write: [join(dir.path, 'w')], allowUnixSockets: [sock] } };
    const link = join(dir.path, 'w', 'to-allowed');
    rmSync(link, { force: true });
    symlinkSync(sock, link);
    const r = await run(policy, py(connectEach).concat([sock, link]));
    expect(r.stdout).toBe('ok host secret\nok host secret\n');
    expect(allowed.hits() - before).toBe(2);
  });

  it('lets the sandbox use its own sockets: servers, datagrams, descriptor passing, non-dumpable callers', async () => {
    const script = `
import ctypes, os, socket, threading
path = "/tmp/own.sock"
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind(path); srv.listen()
def serve():
    c, _ = srv.accept(); c.sendall(b"own"); c.close()
threading.Thread(target=serve).start()
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(path); print(c.recv(8).decode())
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind("/tmp/own.dgram")
e = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); e.sendto(b"dgram", "/tmp/own.dgram"); print(d.recv(16).decode())
a, b = socket.socketpair()
r, w = os.pipe(); os.write(w, b"passed")
socket.send_fds(a, [b"fd"], [r]); msg, fds, _, _ = socket.recv_fds(b, 16, 4); print(os.read(fds[0], 16).decode())
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
srv2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv2.bind("/tmp/own2.sock"); srv2.listen()
c2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c2.connect("/tmp/own2.sock"); print("non-dumpable ok")
t = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen(); u = socket.create_connection(t.getsockname()); print("tcp ok")
`;
    const r = await run({}, py(script));
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('own\ndgram\npassed\nnon-dumpable ok\ntcp ok\n');
  });

  it('holds in a warm pool, for a socket made while the sandbox waited', async () => {
    const w = join(dir.path, 'w');
    const pool = new Pool({ fs: { write: [w] } }, { size: 1 });
    try {
      await pool.run(['true']);
      await new Promise((r) => setTimeout(r, 200));
      const made = await witness(join(w, 'pool.sock'));
      const r = await pool.run(py(connectEach).concat([join(w, 'pool.sock')]));
      made.server.close();
      expect(r.stdout).toBe('errno 13\n');
      expect(made.hits()).toBe(0);
    } finally {
      await pool.close();
    }
  });
});
