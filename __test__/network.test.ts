// Network policy: the allow-list proxy reached through the in-sandbox bridge,
// with test hosts pinned to loopback servers this test starts. No real host is named.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, Server } from 'node:http';
import { createServer as createTcpServer, Server as TcpServer } from 'node:net';
import { corral, runCliAsync } from './helpers';

const { run } = corral;
let http: Server;
let port = 0;
let other: TcpServer;
let otherPort = 0;

beforeAll(async () => {
  http = createServer((req, res) => res.end(`hello ${req.headers.host} ${req.url}\n`));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  port = (http.address() as { port: number }).port;
  other = createTcpServer((s) => s.end('other\n'));
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  otherPort = (other.address() as { port: number }).port;
});
afterAll(() => {
  http.close();
  other.close();
});

const hosts = () => ({
  'allowed.test': '127.0.0.1',
  'denied.test': '127.0.0.1',
  'outside.test': '127.0.0.1',
  'a.example.test': '127.0.0.1',
  'example.test': '127.0.0.1',
  'evil-example.test': '127.0.0.1',
});
const policy = () => ({ network: { allow: ['allowed.test', '*.example.test', 'denied.test'], deny: ['denied.test'], hosts: hosts() } });
const curl = (...args: string[]) => ['curl', '-s', '-S', '--max-time', '10', ...args];

describe('allow-list proxy', () => {
  it('reaches an allowed name over plain HTTP, CONNECT and SOCKS5', async () => {
    const url = `http://allowed.test:${port}/x`;
    const plain = await run(policy(), curl(url));
    expect(plain.stdout).toBe(`hello allowed.test:${port} /x\n`);
    const tunnel = await run(policy(), curl('--proxytunnel', url));
    expect(tunnel.stdout).toBe(`hello allowed.test:${port} /x\n`);
    const socks = await run(policy(), curl('--proxy', 'socks5h://127.0.0.1:1080', url));
    expect(socks.stdout).toBe(`hello allowed.test:${port} /x\n`);
    expect(plain.violations).toEqual([]);
  });

  it('sets the proxy variables for the command', async () => {
    const r = await run(policy(), ['sh', '-c', 'echo $HTTP_PROXY $https_proxy $ALL_PROXY $NO_PROXY']);
    expect(r.stdout).toBe('http://127.0.0.1:3128 http://127.0.0.1:3128 socks5h://127.0.0.1:1080 localhost,127.0.0.1,::1\n');
  });

  it('refuses and reports a denied name, a name outside the list and a raw IP', async () => {
    const r = await run(policy(), ['sh', '-c', `${curl(`http://denied.test:${port}/`).join(' ')}; ${curl(`http://outside.test:${port}/`).join(' ')}; ${curl('--noproxy', "''", '--proxytunnel', `http://127.0.0.1:${otherPort}/`).join(' ')}; ${curl('--proxy', 'socks5h://127.0.0.1:1080', `http://outside.test:${port}/`).join(' ')}; true`]);
    expect(r.stdout).not.toContain('hello');
    const seen = r.violations.map((v) => `${v.destination}:${v.port} ${v.protocol} ${v.rule ?? ''}`.trim());
    expect(seen).toEqual([`denied.test:${port} http denied.test`, `outside.test:${port} http`, `127.0.0.1:${otherPort} connect`, `outside.test:${port} socks5`]);
    expect(r.violations[1].reason).toMatch(/not in the allow list/);
  });

  it('matches wildcards on subdomains only', async () => {
    const ok = await run(policy(), curl(`http://a.example.test:${port}/`));
    expect(ok.stdout).toBe(`hello a.example.test:${port} /\n`);
    for (const name of ['example.test', 'evil-example.test']) {
      const r = await run(policy(), curl(`http://${name}:${port}/`));
      expect(r.stdout, name).not.toContain('hello');
      expect(r.violations.map((v) => v.destination)).toEqual([name]);
    }
  });

  it('fails closed for programs that ignore the proxy: direct TCP, UDP and DNS', async () => {
    const direct = await run(policy(), curl('--noproxy', '*', `http://127.0.0.1:${port}/`));
    expect(direct.exitCode).not.toBe(0);
    expect(direct.stdout).toBe('');
    const udp = await run(policy(), ['python3', '-c', 'import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n  s.sendto(b"x", ("10.0.0.1", 53)); print("sent")\nexcept OSError as e: print("refused", e.errno)']);
    expect(udp.stdout).toMatch(/^refused/);
    const dns = await run(policy(), ['getent', 'hosts', 'allowed.test']);
    expect(dns.exitCode).not.toBe(0);
  });

  it('streams a large body without buffering it whole', async () => {
    const big = createServer((_, res) => {
      const chunk = Buffer.alloc(1 << 20, 97);
      let left = 32;
      const write = () => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) return res.once('drain', write);
        }
        res.end();
      };
      write();
    });
    await new Promise<void>((r) => big.listen(0, '127.0.0.1', r));
    const bigPort = (big.address() as { port: number }).port;
    const r = await run(policy(), ['sh', '-c', `${curl(`http://allowed.test:${bigPort}/`).join(' ')} | wc -c`]);
    big.close();
    expect(r.stdout.trim()).toBe(String(32 << 20));
  });

  it('carries both directions and half-closes once the proxy hands a tunnel to the bridge', async () => {
    // An echo-digest server: reads until the client half-closes, then answers with the
    // size and SHA-256 of what it got. Uploads go through CONNECT and SOCKS5 tunnels.
    const { createHash } = await import('node:crypto');
    const digest = createTcpServer((sock) => {
      const h = createHash('sha256');
      let n = 0;
      sock.on('data', (d) => {
        h.update(d);
        n += d.length;
      });
      sock.on('end', () => sock.end(`${n} ${h.digest('hex')}\n`));
    });
    await new Promise<void>((r) => digest.listen(0, '127.0.0.1', r));
    const dPort = (digest.address() as { port: number }).port;
    const upload = (via: string) => `
import hashlib, os, socket, struct
data = bytes(range(256)) * 40000
s = socket.create_connection(("127.0.0.1", ${via === 'socks' ? 1080 : 3128}))
if "${via}" == "socks":
    s.sendall(b"\\x05\\x01\\x00"); assert s.recv(2) == b"\\x05\\x00"
    name = b"allowed.test"
    s.sendall(b"\\x05\\x01\\x00\\x03" + bytes([len(name)]) + name + struct.pack(">H", ${dPort}))
    assert s.recv(10)[1] == 0
else:
    s.sendall(b"CONNECT allowed.test:${dPort} HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n")
    head = b""
    while not head.endswith(b"\\r\\n\\r\\n"):
        head += s.recv(1)
    assert b" 200 " in head, head
s.sendall(data)
s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    reply += chunk
print(reply.decode().strip() == f"{len(data)} {hashlib.sha256(data).hexdigest()}", flush=True)
`;
    for (const via of ['connect', 'socks']) {
      const r = await run(policy(), ['python3', '-c', upload(via)]);
      expect(r.stderr).toBe('');
      expect(r.stdout, via).toBe('True\n');
    }
    digest.close();
  });

  it('serves many connections at once', async () => {
    const r = await run(policy(), ['sh', '-c', `for i in $(seq 20); do ${curl(`http://allowed.test:${port}/$i`).join(' ')} & done; wait`]);
    expect(r.stdout.trim().split('\n').sort()).toEqual(Array.from({ length: 20 }, (_, i) => `hello allowed.test:${port} /${i + 1}`).sort());
  });

  it('rejects bad rules naming the field', async () => {
    await expect(run({ network: { allow: ['exa mple.com'] } }, ['true'])).rejects.toMatchObject({ code: 'POLICY_INVALID', field: 'network.allow[0]' });
    await expect(run({ network: { allow: ['a.test:99999'] } }, ['true'])).rejects.toMatchObject({ field: 'network.allow[0]' });
    await expect(run({ network: { mode: 'host', allow: ['a.test'] } }, ['true'])).rejects.toMatchObject({ field: 'network.allow' });
  });
});

describe('host network with Landlock port rules', () => {
  it('connects only to the listed ports', async () => {
    const py = (p: number) => `import socket\ns=socket.socket()\ntry:\n  s.connect(("127.0.0.1", ${p})); print("connected")\nexcept OSError as e: print("refused", e.errno)`;
    const r = await run({ network: { mode: 'host', connectPorts: [port] } }, ['sh', '-c', `python3 -c '${py(port)}'; python3 -c '${py(otherPort)}'`]);
    expect(r.stdout).toBe('connected\nrefused 13\n');
    expect(r.caveats.map((c) => c.code)).toContain('HOST_NETWORK');
  });
});

describe('CLI', () => {
  it('takes --net-allow / --net-host and summarises refusals on stderr', async () => {
    const r = await runCliAsync(['run', '--net-allow', 'allowed.test', '--net-host', 'allowed.test=127.0.0.1', '--net-host', 'outside.test=127.0.0.1', '--', 'sh', '-c', `curl -s http://allowed.test:${port}/; curl -s http://outside.test:${port}/`]);
    expect(r.stdout).toContain(`hello allowed.test:${port}`);
    expect(r.stderr).toMatch(new RegExp(`refused 1 network connection: outside.test:${port} \\(not in the allow list\\)`));
  });
});
