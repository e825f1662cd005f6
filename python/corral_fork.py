"""Template side of corral's copy-on-write fork protocol.

A *template* is a command that corral runs inside a sandbox. It initialises once
(loads a model, parses a data set, imports heavy modules), then calls ``serve()``.
From then on corral asks it to fork *clones*; each clone starts with the template's
memory, shared copy-on-write, so a clone costs a fork rather than a fresh start-up.

Usage::

    import corral_fork
    data = load_model()              # once, in the template
    clone_id = corral_fork.serve()   # returns in every clone with its id; None in the template at the end
    if clone_id is None:
        raise SystemExit(0)
    print(work(data, clone_id))

In a clone, ``serve()`` returns the clone's id (also in ``os.environ["CLONE_ID"]``),
stdout and stderr are fresh pipes that corral reads, and the fork socket is closed.
In the template, ``serve()`` returns None once corral has closed the session and every
clone has exited; the caller should then exit.

Notes for template authors:

* Call ``serve()`` from the main thread, with no other threads running: ``fork()``
  copies only the calling thread, and signal handling needs the main thread.
* ``serve()`` calls ``gc.freeze()`` before the first fork. That moves every object
  the template created into a permanent generation the collector never scans, so a
  collection in a clone does not write to (and so copy) every page holding an old
  object. Calling ``gc.disable()`` early in the template, before loading data, also
  avoids leaving freed holes in pages that clones would share. Reference counting
  still writes to the header of any object a clone touches; bulk data held in a few
  large buffers (bytes, array, numpy) shares best.
* While serving, the template reaps *all* its children; do not rely on waiting for
  child processes of your own started before ``serve()``.
* atexit handlers registered in the template run in every clone too.

The wire protocol is described in docs/fork-protocol.md. Standard library only.
"""

import gc
import json
import os
import selectors
import signal
import socket
import sys
from collections import deque

__all__ = ["serve"]

MAX_MESSAGE = 64 * 1024  # protocol limit on one packet


def serve(fd=None):
    """Serve fork requests from corral on ``fd`` (default: ``$CORRAL_FORK_FD``).

    Returns the clone id (an int >= 0) in each clone, or None in the template once
    corral has closed the session and all clones have exited.
    """
    if fd is None:
        value = os.environ.get("CORRAL_FORK_FD")
        if value is None:
            raise RuntimeError(
                "CORRAL_FORK_FD is not set: this process was not started by corral's "
                "template(); run under corral"
            )
        try:
            fd = int(value)
        except ValueError:
            raise RuntimeError(f"CORRAL_FORK_FD={value!r} is not a descriptor number") from None
    return _Template(fd).run()


def _on_sigchld(signum, frame):
    # Does nothing: a Python-level handler must exist for CPython's C handler to
    # write the signal to the wakeup fd, which is what wakes the selector.
    pass


class _Template:
    def __init__(self, fd):
        try:
            self.sock = socket.socket(fileno=fd)
        except OSError as e:
            raise RuntimeError(f"CORRAL_FORK_FD={fd} is not a usable socket: {e}") from None
        if self.sock.type != socket.SOCK_SEQPACKET:
            raise RuntimeError(f"CORRAL_FORK_FD={fd} is not a SOCK_SEQPACKET socket")
        # Never block on corral: reads stop at EAGAIN, writes wait in the outbox.
        self.sock.setblocking(False)
        self.pids = {}  # clone id -> pid, live clones only
        self.ids = {}  # pid -> clone id
        # Replies not yet sent: (bytes, descriptors to attach and then close). Keeping
        # our own queue means a burst of replies can never deadlock against corral's
        # burst of requests: we keep reading while the socket is full for writing.
        self.outbox = deque()
        self.closing = False  # no more forks; finish when the last clone is reaped
        self.eof = False  # corral will send nothing more
        self.frozen = False  # gc.freeze() done
        self.is_clone = False
        self.events = 0  # what self.sock is registered for

    # -- main loop ---------------------------------------------------------------

    def run(self):
        # Self-pipe: SIGCHLD writes a byte here, so exits wake the selector and we
        # never poll. Both ends non-blocking, as set_wakeup_fd requires.
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.old_handler = signal.signal(signal.SIGCHLD, _on_sigchld)
        self.old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        try:
            self.queue({"op": "ready"})
            while not (self.closing and not self.pids and not self.outbox):
                self.update_interest()
                for key, events in self.sel.select():
                    if key.fd == self.wake_r:
                        self.drain_wakeups()
                        self.reap()
                        continue
                    if events & selectors.EVENT_WRITE:
                        self.flush()
                    if events & selectors.EVENT_READ:
                        clone_id = self.read_requests()
                        if clone_id is not None:
                            return clone_id  # we are the new clone
            return None
        finally:
            if not self.is_clone:
                self.teardown()

    def update_interest(self):
        events = (0 if self.eof else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if self.outbox else 0
        )
        if events == self.events:
            return
        if not self.events:
            self.sel.register(self.sock, events)
        elif not events:
            self.sel.unregister(self.sock)
        else:
            self.sel.modify(self.sock, events)
        self.events = events

    def drain_wakeups(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def teardown(self):
        signal.set_wakeup_fd(self.old_wakeup)
        signal.signal(signal.SIGCHLD, self.old_handler if self.old_handler is not None else signal.SIG_DFL)
        self.sel.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.sock.close()

    # -- requests ------------------------------------------------------------------

    def read_requests(self):
        """Handle every request already queued; return the id if we became a clone."""
        while not self.eof:
            try:
                packet, _, flags, _ = self.sock.recvmsg(MAX_MESSAGE)
            except BlockingIOError:
                return None
            except ConnectionResetError:
                packet, flags = b"", 0
            if not packet:  # end of stream: same as {"op":"close"}
                self.eof = self.closing = True
                return None
            if flags & socket.MSG_TRUNC:
                self.error("message larger than 64 KiB")
                continue
            clone_id = self.handle(packet)
            if clone_id is not None:
                return clone_id
        return None

    def handle(self, packet):
        try:
            msg = json.loads(packet.decode("utf-8"))
        except ValueError as e:  # includes UnicodeDecodeError
            self.error(f"invalid JSON: {e}")
            return None
        if not isinstance(msg, dict):
            self.error("message is not a JSON object")
            return None
        op = msg.get("op")
        if op == "fork":
            return self.fork(msg.get("id"))
        if op == "signal":
            self.signal(msg.get("id"), msg.get("signal"))
        elif op == "close":
            self.closing = True
        else:
            self.error(f"unknown op {op!r}")
        return None

    def fork(self, clone_id):
        if type(clone_id) is not int or clone_id < 0:
            self.error("fork needs an integer id >= 0")
            return None
        if self.closing:
            self.error("template is closing", clone_id)
            return None
        if clone_id in self.pids:
            self.error(f"clone {clone_id} is still running", clone_id)
            return None
        if not self.frozen:
            gc.freeze()  # see module docstring: keeps the GC from copying old pages
            self.frozen = True
        # Anything still in Python's buffers would otherwise be written twice: once by
        # the template and once by the clone (to the clone's pipe).
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        fds = []
        try:
            out = os.pipe()
            fds += out
            err = os.pipe()
            fds += err
            pid = os.fork()
        except OSError as e:  # e.g. EAGAIN from a pids limit, EMFILE
            for fd in fds:
                os.close(fd)
            self.error(f"fork failed: {e}", clone_id)
            return None
        if pid == 0:
            self.become_clone(clone_id, out, err)
            return clone_id
        # Only the clone may hold the write ends, or corral would never see EOF.
        os.close(out[1])
        os.close(err[1])
        self.pids[clone_id] = pid
        self.ids[pid] = clone_id
        self.queue({"op": "forked", "id": clone_id, "pid": pid}, (out[0], err[0]))
        return None

    def become_clone(self, clone_id, out, err):
        """In the child: drop everything that belongs to the template."""
        self.is_clone = True
        signal.set_wakeup_fd(-1)  # first, so no signal writes to a closed fd
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.sel.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.sock.close()
        # Read ends of earlier clones still waiting to be sent: holding them would
        # keep those clones from getting EPIPE if corral stops reading.
        for _, pending in self.outbox:
            for fd in pending:
                os.close(fd)
        os.dup2(out[1], 1)
        os.dup2(err[1], 2)
        for fd in (*out, *err):
            os.close(fd)
        os.environ["CLONE_ID"] = str(clone_id)
        # The descriptor is closed here; a nested serve() should fail clearly.
        os.environ.pop("CORRAL_FORK_FD", None)

    def signal(self, clone_id, signum):
        if type(clone_id) is not int or type(signum) is not int:
            self.error("signal needs an integer id and signal")
            return
        pid = self.pids.get(clone_id)
        if pid is None:
            return  # already reaped (its exit message is sent or queued) or unknown
        try:
            # Safe from pid reuse: the pid stays ours until we reap it.
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        except OSError as e:  # e.g. invalid signal number
            self.error(f"signal failed: {e}", clone_id)

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            clone_id = self.ids.pop(pid, None)
            if clone_id is None:
                continue  # a child the template started itself
            del self.pids[clone_id]
            code = os.waitstatus_to_exitcode(status)
            if code >= 0:
                self.queue({"op": "exit", "id": clone_id, "code": code})
            else:
                self.queue({"op": "exit", "id": clone_id, "signal": -code})

    # -- replies -------------------------------------------------------------------

    def error(self, message, clone_id=None):
        msg = {"op": "error", "message": message}
        if clone_id is not None:
            msg["id"] = clone_id
        self.queue(msg)

    def queue(self, msg, fds=()):
        self.outbox.append((json.dumps(msg, separators=(",", ":")).encode(), fds))
        # Send right away when possible, so read ends are closed promptly and a long
        # burst does not pile up descriptors.
        self.flush()

    def flush(self):
        while self.outbox:
            data, fds = self.outbox[0]
            try:
                if fds:
                    socket.send_fds(self.sock, [data], list(fds), socket.MSG_NOSIGNAL)
                else:
                    self.sock.send(data, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                return  # socket full; update_interest() waits for it to drain
            except (BrokenPipeError, ConnectionResetError):
                # corral is gone: nothing more can be delivered. Keep reaping clones.
                for _, pending in self.outbox:
                    for fd in pending:
                        os.close(fd)
                self.outbox.clear()
                self.eof = self.closing = True
                return
            self.outbox.popleft()
            for fd in fds:  # the kernel holds its own reference while in flight
                os.close(fd)
