"""corral_fork: the template side of corral's copy-on-write fork, for Python.

A template initialises once (loads a model, parses a corpus), then calls ``serve()``.
corral asks it to fork; each clone returns from ``serve()`` with its clone id (also in
``os.environ["CLONE_ID"]``) and shares the template's memory copy-on-write. The template
itself gets ``None`` back once corral is done, and should then exit::

    import sys, corral_fork
    corpus = load_corpus()            # once, in the template
    clone = corral_fork.serve()
    if clone is None:
        sys.exit(0)
    print(score(corpus, shard=clone))  # in each clone; its stdout is its own

Only the standard library is used; Python 3.9 or later. corral starts the template with
the channel at file descriptor ``CORRAL_FORK_FD``; the protocol is in
docs/fork-protocol.md of the corral package.
"""

import gc
import json
import os
import select
import signal
import socket
import sys

__all__ = ["serve", "is_template", "prefer_huge_pages", "ProtocolError"]

FD_ENV = "CORRAL_FORK_FD"
MAX_MESSAGE = 4096


class ProtocolError(RuntimeError):
    """corral sent something this helper does not understand, or the channel is missing."""


def is_template():
    """True when corral started this process as a copy-on-write template."""
    return FD_ENV in os.environ


def serve():
    """Serve fork requests until corral is done.

    Returns the clone id (an int) in each clone and ``None`` in the template once corral
    closes the channel. Call it from the main thread with no other threads running: a fork
    copies only the calling thread.
    """
    raw = os.environ.pop(FD_ENV, None)
    if raw is None:
        raise ProtocolError("not started as a corral template (%s is not set)" % FD_ENV)
    sock = socket.socket(fileno=int(raw))
    os.set_inheritable(sock.fileno(), False)
    return _Server(sock).run()


class _Server:
    def __init__(self, sock):
        self.sock = sock
        self.children = {}  # pid -> protocol id

    def send(self, msg, fds=()):
        data = json.dumps(msg, separators=(",", ":")).encode()
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.send(data)

    def run(self):
        # SIGCHLD wakes the loop through a pipe, so exits are reported as they happen.
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        old_handler = signal.signal(signal.SIGCHLD, lambda *_: None)
        restore = (wake_r, wake_w, old_wakeup, old_handler)
        # Objects that exist now are never collected again: the collector would otherwise
        # write to every page it scans and undo the sharing in each clone.
        gc.freeze()
        prefer_huge_pages()
        not_dumpable()
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        try:
            self.send({"op": "ready"})
            while True:
                for fd, _ in poller.poll():
                    if fd == wake_r:
                        _drain(wake_r)
                        self.reap()
                        continue
                    clone = self.handle()
                    if clone is _CLOSED:
                        return None
                    if clone is not None:
                        # In the clone now: drop the template's plumbing, keep nothing of it.
                        _restore(restore, unfreeze=False)
                        restore = None
                        self.sock.close()
                        return clone
        finally:
            if restore is not None:
                _restore(restore)

    def handle(self):
        """One message from corral. Returns a clone id in a fresh clone, _CLOSED at the end."""
        data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 4)
        for fd in fds:
            os.close(fd)
        if not data:
            return _CLOSED
        try:
            msg = json.loads(data)
            op = msg.get("op")
            if op == "fork":
                ident, clone = int(msg["id"]), int(msg["clone"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # A bad request is answered, not fatal: the template keeps serving.
            self.send({"op": "error", "message": "bad request %r: %s" % (data[:200], e)})
            return None
        if op == "fork":
            return self.fork(ident, clone)
        if op == "signal":
            for pid, cid in self.children.items():
                if cid == msg.get("id"):
                    try:
                        os.kill(pid, int(msg.get("signal", signal.SIGTERM)))
                    except (ProcessLookupError, ValueError, TypeError):
                        pass
            return None
        if op == "close":
            return _CLOSED
        self.send({"op": "error", "message": "unknown op %r" % (op,)})
        return None

    def fork(self, ident, clone):
        # Buffered output would otherwise be written once by the template and once per clone.
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            pid = os.fork()
        except OSError as e:
            self.send({"op": "error", "id": ident, "message": str(e)})
            return None
        if pid == 0:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            os.environ["CLONE_ID"] = str(clone)
            return clone
        os.close(out_w)
        os.close(err_w)
        self.children[pid] = ident
        try:
            self.send({"op": "forked", "id": ident, "pid": pid}, (out_r, err_r))
        finally:
            os.close(out_r)
            os.close(err_r)
        return None

    def reap(self):
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ident = self.children.pop(pid, None)
            if ident is None:
                continue
            if os.WIFSIGNALED(status):
                self.send({"op": "exit", "id": ident, "signal": os.WTERMSIG(status)})
            else:
                self.send({"op": "exit", "id": ident, "code": os.waitstatus_to_exitcode(status)})


_CLOSED = object()


def not_dumpable():
    """Make this process, and so every clone forked from it from birth, not dumpable.

    No other process of the sandbox (another clone among them) may then read its memory
    through /proc/PID/mem or attach to it: the sandbox's processes hold no capabilities.
    An exec resets this; a clone does not exec.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, 0
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_DUMPABLE): " + os.strerror(err))


def prefer_huge_pages():
    """Back large anonymous mappings with transparent huge pages, best effort.

    A fork copies one page-table entry per resident 4 KiB page, most of a fork's cost for a
    large template; on huge pages it is 512 times fewer. Writes in a clone still copy 4 KiB
    at a time, so sharing is unchanged. Needs Linux 6.1 (MADV_COLLAPSE); where it fails the
    template simply forks at the 4 KiB rate.
    """
    huge = 2 << 20
    try:
        import ctypes

        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as f:
            maps = f.read().splitlines()
    except (OSError, AttributeError, ImportError):
        return
    for line in maps:
        fields = line.split()
        path = fields[5] if len(fields) > 5 else ""
        if not fields[1].startswith("rw") or not fields[1].endswith("p") or path not in ("", "[heap]"):
            continue
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        start, end = -(-lo // huge) * huge, hi // huge * huge
        if end > start:
            madvise(start, end - start, 14)  # MADV_HUGEPAGE
            madvise(start, end - start, 25)  # MADV_COLLAPSE


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _restore(saved, unfreeze=True):
    wake_r, wake_w, old_wakeup, old_handler = saved
    signal.set_wakeup_fd(old_wakeup)
    signal.signal(signal.SIGCHLD, old_handler)
    os.close(wake_r)
    os.close(wake_w)
    # A clone stays frozen: collecting the template's objects would copy their pages.
    if unfreeze:
        gc.unfreeze()
