"""Tests for corral_fork: the test plays corral's side of the fork socket.

The protocol is docs/fork-protocol.md: corral sends {"op":"fork","id":I,"clone":C};
replies name the clone by `id`; the clone itself sees C (serve()'s return value and
CLONE_ID). The tests use id = clone + ID_OFFSET so that mixing the two up shows.

Run: cd /work/main && python3 -m pytest -q python/test_corral_fork.py
Standalone: needs only Python and pytest, not corral.
"""

import hashlib
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

ID_OFFSET = 100000
DATA_EXPR = "bytes(range(256)) * 40000"  # ~10 MB, built once in the template
CHECKSUM = hashlib.sha256(eval(DATA_EXPR)).hexdigest()[:16]

# The template: loads data once, then serves. Clones print "<clone> <checksum>".
# Clones >= 1000 sleep (to be signalled); clone 999 also writes stderr and exits 3.
TEMPLATE = f"""
import hashlib, os, sys, time
sys.path.insert(0, {HERE!r})
import corral_fork

data = {DATA_EXPR}
print("template-start")                   # buffered (stdout is a pipe): must not repeat in clones
if os.environ.get("FAIL_FIRST_FORK"):     # simulate EAGAIN from a pids limit, once
    import errno
    real_fork = os.fork
    def failing_fork():
        os.fork = real_fork
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    os.fork = failing_fork

clone = corral_fork.serve()
if clone is None:
    print("template-end")
    raise SystemExit(0)
assert os.environ["CLONE_ID"] == str(clone), os.environ.get("CLONE_ID")
assert "CORRAL_FORK_FD" not in os.environ
if clone >= 1000:
    time.sleep(60)
print(f"{{clone}} {{hashlib.sha256(data).hexdigest()[:16]}}")
if clone == 999:
    print("stderr of 999", file=sys.stderr)
    raise SystemExit(3)
"""


class Corral:
    """corral's end of the socket: starts the template, sends requests, collects replies."""

    def __init__(self, extra_env):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, CORRAL_FORK_FD=str(theirs.fileno()), **extra_env)
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
        self.forked = {}  # clone -> forked message
        self.fds = {}  # clone -> (stdout fd, stderr fd)
        self.exits = {}  # clone -> exit message
        self.errors = []

    def send(self, msg):
        self.sock.send(json.dumps(msg).encode())

    def fork(self, clone):
        self.send({"op": "fork", "id": clone + ID_OFFSET, "clone": clone})

    def kill(self, clone, signum):
        self.send({"op": "signal", "id": clone + ID_OFFSET, "signal": signum})

    def recv(self):
        """One reply; forked/exit/error are also filed by clone number."""
        data, fds, _, _ = socket.recv_fds(self.sock, 65536, 2)
        assert data, "template closed the socket"
        msg = json.loads(data)
        clone = msg["id"] - ID_OFFSET if "id" in msg else None
        if msg["op"] == "forked":
            assert len(fds) == 2, msg
            assert clone not in self.exits, "exit before forked"
            self.forked[clone] = msg
            self.fds[clone] = tuple(fds)
        else:
            assert not fds, msg
            if msg["op"] == "exit":
                assert clone in self.forked, "exit for a clone never forked"
                self.exits[clone] = msg
            elif msg["op"] == "error":
                self.errors.append(msg)
        return msg

    def wait_for(self, done):
        while not done():
            self.recv()

    def output(self, clone):
        """A clone's stdout and stderr, read to EOF (i.e. until it exits)."""
        out = []
        for fd in self.fds.pop(clone):
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(fd)
            out.append(b"".join(chunks).decode())
        return tuple(out)

    def finish(self):
        """The template's exit code, stdout and stderr once it exits."""
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out.decode(), err.decode()

    def cleanup(self):
        for fds in self.fds.values():
            for fd in fds:
                os.close(fd)
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        # In corral the sandbox ends leftover clones; here we do it.
        for clone, msg in self.forked.items():
            if clone not in self.exits:
                try:
                    os.kill(msg["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass


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
        c.cleanup()


def test_fork_three_clones(corral):
    c = corral()
    for clone in range(3):
        c.fork(clone)
    c.wait_for(lambda: len(c.exits) == 3)
    pids = {c.forked[clone]["pid"] for clone in range(3)}
    assert len(pids) == 3 and c.proc.pid not in pids
    for clone in range(3):
        assert c.output(clone) == (f"{clone} {CHECKSUM}\n", "")
        assert c.exits[clone] == {"op": "exit", "id": clone + ID_OFFSET, "code": 0}
    c.send({"op": "close"})
    code, out, err = c.finish()
    assert (code, err) == (0, "")
    # Output buffered before the fork appears once, from the template only.
    assert out == "template-start\ntemplate-end\n"


def test_exit_code_and_stderr(corral):
    c = corral()
    c.fork(999)
    c.wait_for(lambda: 999 in c.exits)
    assert c.output(999) == (f"999 {CHECKSUM}\n", "stderr of 999\n")
    assert c.exits[999] == {"op": "exit", "id": 999 + ID_OFFSET, "code": 3}


def test_signal_kills_sleeping_clone(corral):
    c = corral()
    c.fork(1000)
    c.wait_for(lambda: 1000 in c.forked)
    c.kill(1000, signal.SIGKILL)
    c.wait_for(lambda: 1000 in c.exits)
    assert c.exits[1000] == {"op": "exit", "id": 1000 + ID_OFFSET, "signal": 9}
    assert c.output(1000) == ("", "")
    # Signalling a clone that is gone is ignored, not an error.
    c.kill(1000, signal.SIGKILL)
    c.send({"op": "close"})
    assert c.finish()[0] == 0
    assert c.errors == []


def test_unknown_op_gets_error_and_serving_goes_on(corral):
    c = corral()
    c.send({"op": "bogus"})
    msg = c.recv()
    assert msg["op"] == "error" and "bogus" in msg["message"] and "id" not in msg
    c.fork(5)
    c.wait_for(lambda: 5 in c.exits)
    assert c.output(5)[0] == f"5 {CHECKSUM}\n"


def test_malformed_requests_get_errors_and_serving_goes_on(corral):
    c = corral()
    c.sock.send(b"not json")
    c.send({"op": "fork", "id": 1})  # no clone
    for _ in range(2):
        msg = c.recv()
        assert msg["op"] == "error" and "bad request" in msg["message"], msg
    c.fork(6)
    c.wait_for(lambda: 6 in c.exits)
    assert c.output(6)[0] == f"6 {CHECKSUM}\n"


def test_fork_failure_reports_error_with_id(corral):
    c = corral(FAIL_FIRST_FORK="1")
    c.fork(1)
    msg = c.recv()
    assert msg["op"] == "error" and msg["id"] == 1 + ID_OFFSET and msg["message"]
    c.fork(2)  # the template keeps serving
    c.wait_for(lambda: 2 in c.exits)
    assert c.exits[2]["code"] == 0


def test_close_ends_template_with_clones_running(corral):
    # Per the protocol the template stops serving at once; corral's sandbox then ends
    # any clone still running (cleanup() does that here).
    c = corral()
    c.fork(1001)
    c.wait_for(lambda: 1001 in c.forked)
    c.send({"op": "close"})
    code, out, err = c.finish()
    assert (code, err) == (0, "")
    assert out.endswith("template-end\n")
    assert c.sock.recv(65536) == b""  # the template's end is closed


def test_end_of_stream_acts_as_close(corral):
    c = corral()
    c.fork(3)
    c.wait_for(lambda: 3 in c.exits)
    c.sock.shutdown(socket.SHUT_WR)
    assert c.finish()[0] == 0


def test_burst_of_200_forks(corral):
    c = corral()
    n = 200
    for clone in range(n):  # back-to-back, before reading any reply
        c.fork(clone)
    while len(c.exits) < n:
        msg = c.recv()
        if msg["op"] == "forked":  # read output as it comes, keeping few fds open
            clone = msg["id"] - ID_OFFSET
            assert c.output(clone) == (f"{clone} {CHECKSUM}\n", "")
    assert set(c.forked) == set(range(n))
    assert all(c.exits[clone]["code"] == 0 for clone in range(n))
    assert len({m["pid"] for m in c.forked.values()}) == n
    assert c.errors == []
    c.send({"op": "close"})
    assert c.finish()[0] == 0


def test_serve_without_env_raises(monkeypatch):
    monkeypatch.delenv("CORRAL_FORK_FD", raising=False)
    with pytest.raises(RuntimeError, match="corral"):
        corral_fork.serve()
