//! The network bridge. Runs in: sandbox init (pid 1), for `network: { allow: … }`.
//!
//! The sandbox has only loopback. The bridge listens on 127.0.0.1 at the ports the
//! command's HTTP_PROXY / ALL_PROXY name and relays every connection, byte for byte, to
//! the host-side proxy's Unix socket, reached through a descriptor the helper opened
//! (`/proc/self/fd/N` resolves to that socket whatever the sandbox's mount view is). It
//! never parses what it relays; the proxy decides. It runs inside init's event loop:
//! single-threaded and non-blocking; each direction moves bytes with `splice` through a
//! pipe, so they never enter this process's memory.

use super::{Step, StepError};
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Pipe capacity per direction (the unprivileged maximum is 1 MiB by default).
const PIPE_SIZE: i32 = 1 << 20;

pub struct Bridge {
    listeners: Vec<TcpListener>,
    /// `/proc/self/fd/N` of the proxy socket.
    proxy: String,
    pairs: Vec<Pair>,
}

/// One relayed connection: the command's TCP stream and the proxy's Unix stream.
struct Pair {
    tcp: TcpStream,
    unix: UnixStream,
    up: Half,
    down: Half,
}

/// One direction of a pair: bytes spliced from one side into a pipe, waiting to be
/// spliced out to the other.
struct Half {
    pipe_r: OwnedFd,
    pipe_w: OwnedFd,
    in_pipe: usize,
    eof: bool,
    done: bool,
}

impl Half {
    fn new() -> std::io::Result<Half> {
        let (pipe_r, pipe_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        // A bigger pipe means fewer trips through poll on a fast stream; failure is harmless.
        // SAFETY: fcntl on a pipe we own.
        unsafe { libc::fcntl(pipe_w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Half { pipe_r, pipe_w, in_pipe: 0, eof: false, done: false })
    }
    fn pending(&self) -> bool {
        self.in_pipe > 0
    }
}

impl Bridge {
    pub fn listen(ports: &[u16], proxy_fd: RawFd) -> Result<Bridge, StepError> {
        let mut listeners = Vec::new();
        for port in ports {
            let l = TcpListener::bind(("127.0.0.1", *port)).step("bridge listen")?;
            l.set_nonblocking(true).step("bridge listen")?;
            listeners.push(l);
        }
        Ok(Bridge { listeners, proxy: format!("/proc/self/fd/{proxy_fd}"), pairs: Vec::new() })
    }

    /// The descriptors to poll and for what, given the current buffers.
    pub fn interest(&self, out: &mut Vec<libc::pollfd>) {
        for l in &self.listeners {
            out.push(libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        for p in &self.pairs {
            let (t, u) = (p.tcp.as_raw_fd(), p.unix.as_raw_fd());
            let mut te = 0;
            let mut ue = 0;
            if !p.up.done {
                if p.up.pending() {
                    ue |= libc::POLLOUT
                } else if !p.up.eof {
                    te |= libc::POLLIN
                }
            }
            if !p.down.done {
                if p.down.pending() {
                    te |= libc::POLLOUT
                } else if !p.down.eof {
                    ue |= libc::POLLIN
                }
            }
            out.push(libc::pollfd { fd: t, events: te, revents: 0 });
            out.push(libc::pollfd { fd: u, events: ue, revents: 0 });
        }
    }

    /// Acts on what `poll` reported for the descriptors `interest` listed (in that order).
    pub fn handle(&mut self, ready: &[libc::pollfd]) {
        let (listeners, pairs) = ready.split_at(self.listeners.len());
        let ready_pairs: Vec<(i16, i16)> = pairs.chunks(2).map(|c| (c[0].revents, c[1].revents)).collect();
        for (pair, (t, u)) in self.pairs.iter_mut().zip(ready_pairs) {
            if t != 0 || u != 0 {
                pair.pump();
            }
        }
        self.pairs.retain(|p| !(p.up.done && p.down.done));
        for (l, r) in self.listeners.iter().zip(listeners) {
            if r.revents == 0 {
                continue;
            }
            while let Ok((tcp, _)) = l.accept() {
                // A refused connection to the proxy is the proxy's to explain; drop this one.
                let Ok(unix) = UnixStream::connect(&self.proxy) else { continue };
                if tcp.set_nonblocking(true).is_err() || unix.set_nonblocking(true).is_err() {
                    continue;
                }
                if let (Ok(up), Ok(down)) = (Half::new(), Half::new()) {
                    self.pairs.push(Pair { tcp, unix, up, down });
                }
            }
        }
    }
}

impl Pair {
    fn pump(&mut self) {
        // Both directions, until neither can progress without waiting. An error on either
        // side ends the whole connection.
        loop {
            let progressed = step(&mut self.tcp, &mut self.unix, &mut self.up)
                .and_then(|a| step(&mut self.unix, &mut self.tcp, &mut self.down).map(|b| a || b));
            match progressed {
                Ok(true) => continue,
                Ok(false) => break,
                Err(()) => {
                    self.up.done = true;
                    self.down.done = true;
                    break;
                }
            }
        }
    }
}

/// `splice(2)` without blocking; `Ok(None)` when it would block.
fn splice(from: RawFd, to: RawFd, len: usize) -> std::io::Result<Option<usize>> {
    // SAFETY: splice between descriptors we own; no user memory involved.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Moves bytes `from` → `to` through `half`; `Ok(true)` if anything happened.
fn step<R: AsRawFd, W: AsRawFd>(from: &mut R, to: &mut W, half: &mut Half) -> Result<bool, ()> {
    if half.done {
        return Ok(false);
    }
    let mut progressed = false;
    if half.pending() {
        match splice(half.pipe_r.as_raw_fd(), to.as_raw_fd(), half.in_pipe).map_err(drop)? {
            Some(n) => {
                half.in_pipe -= n;
                progressed = n > 0;
            }
            None => return Ok(false),
        }
        if half.pending() {
            return Ok(progressed);
        }
    }
    if !half.eof {
        match splice(from.as_raw_fd(), half.pipe_w.as_raw_fd(), PIPE_SIZE as usize).map_err(drop)? {
            Some(0) => half.eof = true,
            Some(n) => {
                half.in_pipe += n;
                return Ok(true);
            }
            None => return Ok(progressed),
        }
    }
    // End of stream with everything delivered: pass the end on.
    half.done = true;
    // SAFETY: shutdown on a descriptor the pair owns.
    unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
    Ok(true)
}
