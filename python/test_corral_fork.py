"""Tests for corral_fork: the test plays corral's side of the fork socket.

Run: cd /work/main && python3 -m pytest -q python/test_corral_fork.py
Standalone: needs only Python and pytest, not corral.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corral_fork  # noqa: E402

# The template: loads some data once, then serves. Clones print "<id> <checksum>".
# Ids >= 1000 sleep (to be signalled); id 7 also writes to stderr and exits 3.
TEMPLATE = f"""
import hashlib, os, sys, time
sys.path.insert(0, {HERE!r})
import corral_fork

data = bytes(range(256)) * 40000          # ~10 MB, loaded once in the template
checksum = hashlib.sha256(data).hexdigest()[:16]
print("template-start")                   # buffered (stdout is a pipe): must not repeat in clones
if os.environ.get("FAIL_FIRST_FORK"):     # simulate EAGAIN from a pids limit, once
    import errno
    real_fork = os.fork
    def failing_fork():
        os.fork = real_fork
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    os.fork = failing_fork

clone_id = corral_fork.serve()
if clone_id is None:
    print("template-end")
    raise SystemExit(0)
assert os.environ["CLONE_ID"] == str(clone_id)
assert "CORRAL_FORK_FD" not in os.environ
if clone_id >= 1000:
    time.sleep(60)
print(f"{{clone_id}} {{hashlib.sha256(data).hexdigest()[:16]}}")
if clone_id == 7:
    print("seven", file=sys.stderr)
    raise SystemExit(3)
"""

CHECKSUM = __import__("hashlib").sha256(bytes(range(256)) * 40000).hexdigest()[:16]


class Corral:
    """corral's end of the socket: send requests, collect replies."""

    def __init__(self, extra_env=None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, CORRAL_FORK_FD=str(theirs.fileno()), **(extra_env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TEMPLATE],
            pass_fds=[theirs.fileno()],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        theirs.close()
        self.sock = ours
        self.sock.settimeout(30)  # a hang fails the test instead of stalling it
        self.forked = {}  # id -> message
        self.fds = {}  # id -> (stdout fd, stderr fd)
        self.exits = {}  # id -> message
        self.errors = []

    def send(self, msg):
        self.sock.send(json.dumps(msg).encode() if isinstance(msg, dict) else msg)

    def recv(self):
        data, fds, _, _ = socket.recv_fds(self.sock, 65536, 2)
        assert data, "template closed the socket"
        msg = json.loads(data)
        if msg["op"] == "forked":
            assert len(fds) == 2, msg
            assert msg["id"] not in self.exits, "exit before forked"
            self.forked[msg["id"]] = msg
            self.fds[msg["id"]] = tuple(fds)
        else:
            assert not fds, msg
            if msg["op"] == "exit":
                self.exits[msg["id"]] = msg
            elif msg["op"] == "error":
                self.errors.append(msg)
        return msg

    def wait_for(self, done):
        while not done():
            self.recv()

    def output(self, clone_id):
        """Read a clone's stdout and stderr to EOF (i.e. until it exits)."""
        out = []
        for fd in self.fds.pop(clone_id):
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            os.close(fd)
            out.append(b"".join(chunks).decode())
        return tuple(out)

    def finish(self):
        """Template stdout/stderr and exit code after it exits."""
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out.decode(), err.decode()

    def close(self):
        for fds in self.fds.values():
            for fd in fds:
                os.close(fd)
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def corral():
    made = []

    def start(**extra_env):
        c = Corral(extra_env)
        made.append(c)
        assert c.recv() == {"op": "ready"}
        return c

    yield start
    for c in made:
        c.close()


def test_fork_three_clones(corral):
    c = corral()
    for i in range(3):
        c.send({"op": "fork", "id": i})
    c.wait_for(lambda: len(c.exits) == 3)
    pids = {c.forked[i]["pid"] for i in range(3)}
    assert len(pids) == 3 and c.proc.pid not in pids
    for i in range(3):
        assert c.output(i) == (f"{i} {CHECKSUM}\n", "")
        assert c.exits[i] == {"op": "exit", "id": i, "code": 0}
    c.send({"op": "close"})
    code, out, err = c.finish()
    assert code == 0, err
    # Output buffered before the fork appears once, from the template only.
    assert out == "template-start\ntemplate-end\n"
    assert err == ""


def test_exit_code_and_stderr(corral):
    c = corral()
    c.send({"op": "fork", "id": 7})
    c.wait_for(lambda: 7 in c.exits)
    assert c.output(7) == (f"7 {CHECKSUM}\n", "seven\n")
    assert c.exits[7] == {"op": "exit", "id": 7, "code": 3}


def test_signal_kills_sleeping_clone(corral):
    c = corral()
    c.send({"op": "fork", "id": 1000})
    c.wait_for(lambda: 1000 in c.forked)
    c.send({"op": "signal", "id": 1000, "signal": signal.SIGKILL})
    c.wait_for(lambda: 1000 in c.exits)
    assert c.exits[1000] == {"op": "exit", "id": 1000, "signal": 9}
    assert c.output(1000) == ("", "")
    # Signalling a clone that is gone is ignored, not an error.
    c.send({"op": "signal", "id": 1000, "signal": signal.SIGKILL})
    c.send({"op": "close"})
    assert c.finish()[0] == 0
    assert c.errors == []


def test_unknown_op_and_bad_messages_get_errors(corral):
    c = corral()
    c.send({"op": "bogus"})
    msg = c.recv()
    assert msg["op"] == "error" and "bogus" in msg["message"]
    c.send(b"not json")
    assert c.recv()["op"] == "error"
    c.send({"op": "fork", "id": -1})
    assert c.recv()["op"] == "error"
    # ...and the template keeps serving.
    c.send({"op": "fork", "id": 5})
    c.wait_for(lambda: 5 in c.exits)
    assert c.output(5)[0] == f"5 {CHECKSUM}\n"


def test_fork_failure_reports_error_with_id(corral):
    c = corral(FAIL_FIRST_FORK="1")
    c.send({"op": "fork", "id": 1})
    msg = c.recv()
    assert msg["op"] == "error" and msg["id"] == 1 and "fork failed" in msg["message"]
    c.send({"op": "fork", "id": 2})
    c.wait_for(lambda: 2 in c.exits)
    assert c.exits[2]["code"] == 0


def test_close_waits_for_running_clones(corral):
    c = corral()
    c.send({"op": "fork", "id": 1001})
    c.wait_for(lambda: 1001 in c.forked)
    c.send({"op": "close"})
    c.send({"op": "fork", "id": 2})  # refused: closing
    msg = c.recv()
    assert msg["op"] == "error" and msg["id"] == 2
    assert c.proc.poll() is None  # still waiting for clone 1001
    c.send({"op": "signal", "id": 1001, "signal": signal.SIGTERM})
    c.wait_for(lambda: 1001 in c.exits)
    assert c.exits[1001]["signal"] == signal.SIGTERM
    code, out, err = c.finish()
    assert code == 0, err
    assert out.endswith("template-end\n")


def test_end_of_stream_acts_as_close(corral):
    c = corral()
    c.send({"op": "fork", "id": 3})
    c.wait_for(lambda: 3 in c.exits)
    c.sock.shutdown(socket.SHUT_WR)
    assert c.finish()[0] == 0


def test_burst_of_200_forks(corral):
    c = corral()
    n = 200
    for i in range(n):  # back-to-back, before reading any reply
        c.send({"op": "fork", "id": i})
    while len(c.exits) < n:
        msg = c.recv()
        if msg["op"] == "forked":  # read output as it comes, keeping few fds open
            assert c.output(msg["id"]) == (f"{msg['id']} {CHECKSUM}\n", "")
    assert set(c.forked) == set(range(n))
    assert all(c.exits[i]["code"] == 0 for i in range(n))
    assert len({m["pid"] for m in c.forked.values()}) == n
    assert c.errors == []
    c.send({"op": "close"})
    assert c.finish()[0] == 0


def test_serve_without_env_raises(monkeypatch):
    monkeypatch.delenv("CORRAL_FORK_FD", raising=False)
    with pytest.raises(RuntimeError, match="run under corral"):
        corral_fork.serve()
