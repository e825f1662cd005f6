//! The network bridge. Runs in: sandbox init (pid 1), for `network: { allow: … }`.
//!
//! The sandbox has only loopback. The bridge listens on 127.0.0.1 at the ports the
//! command's HTTP_PROXY / ALL_PROXY name and relays every connection, byte for byte, to
//! the host-side proxy, through a stream it opens over the proxy's channel for each one
//! (`crate::ipc::proxy`: no path leads to the proxy, the channel came with the spawn
//! request). It never parses what it relays; the proxy decides. It runs inside init's event loop:
//! single-threaded and non-blocking; each direction moves bytes with `splice` through a
//! pipe, so they never enter this process's memory.
//!
//! Once the proxy has allowed and opened a tunnel it hands the upstream socket over
//! (client/proxy/relay.rs): the bridge then splices between the command's connection and that
//! socket directly, after the bytes already on their way to the proxy have gone through
//! it. Each connection goes through three stages: `Awaiting` (everything via the proxy,
//! watching for the hand-off), `Draining` (downstream direct; upstream still flushing to
//! the proxy until it closes) and `Direct`.

use crate::ipc::tunnel::{HANDOFF_HELLO, HANDOFF_MARK};
use crate::sandbox::{Step, StepError};
use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pipe capacity for a direction that fills its pipe (the unprivileged maximum is 1 MiB
/// by default); others keep the kernel's default (64 KiB).
const BIG_PIPE: i32 = 1 << 20;
/// Pipes of one bridge enlarged to `BIG_PIPE` at once.
const MAX_BIG_PIPES: usize = 16;
/// Largest proxy message read before the hand-off (handshake replies are tens of bytes).
const HANDSHAKE_READ: usize = 4096;

pub struct Bridge {
    listeners: Vec<TcpListener>,
    /// The proxy's channel (init's descriptor).
    proxy: RawFd,
    pairs: Vec<Pair>,
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// Both directions through the proxy; its messages are read (not spliced) to catch
    /// the hand-off.
    Awaiting,
    /// Upstream socket in hand: downstream splices from it; upstream bytes already queued
    /// for the proxy are flushed to it, then its end is shut and its close awaited.
    Draining { shut: bool },
    /// The proxy is gone from this connection.
    Direct,
}

/// One relayed connection.
struct Pair {
    /// The command's connection.
    tcp: TcpStream,
    /// To the proxy, until the hand-off has drained.
    unix: Option<UnixStream>,
    /// The upstream socket, after the hand-off.
    upstream: Option<OwnedFd>,
    stage: Stage,
    /// Proxy bytes for the command, read before the hand-off, not yet written.
    backlog: Vec<u8>,
    up: Half,
    down: Half,
}

/// One direction of a pair: bytes spliced from one side into a pipe, waiting to be
/// spliced out to the other.
///
/// The pipe exists only while bytes move: it is made when the source has something and
/// dropped once it is empty and the source has nothing more. Pipe pages are a budget of
/// the host user (`fs.pipe-user-pages-soft`), shared by every sandbox of the caller and
/// the caller itself; a command holding many idle connections must not spend it (past it,
/// every new pipe of that user gets 2 pages instead of 16).
#[derive(Default)]
struct Half {
    pipe: Option<Pipe>,
    in_pipe: usize,
    eof: bool,
    done: bool,
}

impl Half {
    fn pending(&self) -> bool {
        self.in_pipe > 0
    }
}

/// Pipes enlarged to `BIG_PIPE` in this process (init is single-threaded; the atomic only
/// makes the static safe).
static BIG_PIPES: AtomicUsize = AtomicUsize::new(0);

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    capacity: usize,
    big: bool,
}

impl Pipe {
    fn new() -> Result<Pipe, ()> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).map_err(drop)?;
        // SAFETY: fcntl on a pipe we own.
        let capacity = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
        Ok(Pipe { r, w, capacity: usize::try_from(capacity).map_err(drop)?, big: false })
    }

    /// A stream that fills its pipe gets a bigger one (fewer trips through poll), while
    /// few others have one; failure is harmless.
    fn grow(&mut self) {
        if self.big || BIG_PIPES.load(Ordering::Relaxed) >= MAX_BIG_PIPES {
            return;
        }
        // SAFETY: fcntl on a pipe we own (growing keeps what it holds).
        let n = unsafe { libc::fcntl(self.w.as_raw_fd(), libc::F_SETPIPE_SZ, BIG_PIPE) };
        if let Ok(n) = usize::try_from(n) {
            self.capacity = n;
            self.big = true;
            BIG_PIPES.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if self.big {
            BIG_PIPES.fetch_sub(1, Ordering::Relaxed);
        }
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
        Ok(Bridge { listeners, proxy: proxy_fd, pairs: Vec::new() })
    }

    /// The descriptors to poll and for what, given the current buffers: per pair, the
    /// command's connection, the proxy's and the upstream socket (-1 when absent).
    pub fn interest(&self, out: &mut Vec<libc::pollfd>) {
        for l in &self.listeners {
            out.push(libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        for p in &self.pairs {
            let [t, u, s] = p.interest();
            let fd = |f: Option<RawFd>| f.unwrap_or(-1);
            out.push(libc::pollfd { fd: p.tcp.as_raw_fd(), events: t, revents: 0 });
            out.push(libc::pollfd { fd: fd(p.unix.as_ref().map(|u| u.as_raw_fd())), events: u, revents: 0 });
            out.push(libc::pollfd { fd: fd(p.upstream.as_ref().map(|u| u.as_raw_fd())), events: s, revents: 0 });
        }
    }

    /// Acts on what `poll` reported for the descriptors `interest` listed (in that order).
    pub fn handle(&mut self, ready: &[libc::pollfd]) {
        let (listeners, pairs) = ready.split_at(self.listeners.len());
        let ready_pairs: Vec<bool> = pairs.chunks(3).map(|c| c.iter().any(|p| p.revents != 0)).collect();
        for (pair, ready) in self.pairs.iter_mut().zip(ready_pairs) {
            if ready {
                pair.pump();
            }
        }
        self.pairs.retain(|p| !(p.up.done && p.down.done));
        for (l, r) in self.listeners.iter().zip(listeners) {
            if r.revents == 0 {
                continue;
            }
            while let Ok((tcp, _)) = l.accept() {
                // A proxy that is not keeping up (or gone) is the proxy's to explain: drop
                // this connection rather than wait.
                // SAFETY: init keeps the channel open for as long as the bridge lives.
                let channel = unsafe { BorrowedFd::borrow_raw(self.proxy) };
                let Ok(unix) = crate::ipc::proxy::open(channel) else { continue };
                let mut unix = UnixStream::from(unix);
                // Blocking and into an empty socket: the one byte goes at once.
                if unix.write_all(&[HANDOFF_HELLO]).is_err() {
                    continue;
                }
                if tcp.set_nonblocking(true).is_err() || unix.set_nonblocking(true).is_err() {
                    continue;
                }
                self.pairs.push(Pair {
                    tcp,
                    unix: Some(unix),
                    upstream: None,
                    stage: Stage::Awaiting,
                    backlog: Vec::new(),
                    up: Half::default(),
                    down: Half::default(),
                });
            }
        }
    }
}

impl Pair {
    /// Poll events for [tcp, unix, upstream].
    fn interest(&self) -> [i16; 3] {
        let mut ev = [0i16; 3];
        const T: usize = 0;
        const U: usize = 1;
        const S: usize = 2;
        // Where each direction writes and reads in this stage.
        let (up_to, down_from) = match self.stage {
            Stage::Awaiting => (U, U),
            Stage::Draining { .. } => (U, S),
            Stage::Direct => (S, S),
        };
        if !self.up.done {
            if self.up.pending() {
                ev[up_to] |= libc::POLLOUT;
            } else if !self.up.eof && !matches!(self.stage, Stage::Draining { .. }) {
                ev[T] |= libc::POLLIN;
            }
        }
        if let Stage::Draining { shut: true } = self.stage {
            ev[U] |= libc::POLLIN; // the proxy's close
        }
        if !self.down.done {
            if self.down.pending() || !self.backlog.is_empty() {
                ev[T] |= libc::POLLOUT;
            } else if !self.down.eof {
                ev[down_from] |= libc::POLLIN;
            }
        }
        ev
    }

    fn pump(&mut self) {
        // Until nothing can progress without waiting. An error on any side ends the whole
        // connection.
        loop {
            match self.pump_once() {
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

    fn pump_once(&mut self) -> Result<bool, ()> {
        let tcp = self.tcp.as_raw_fd();
        let unix = self.unix.as_ref().map(|u| u.as_raw_fd());
        let upstream = self.upstream.as_ref().map(|u| u.as_raw_fd());
        let mut progressed = self.flush_backlog()?;
        match self.stage {
            Stage::Awaiting => {
                let unix = unix.ok_or(())?;
                progressed |= step(tcp, unix, &mut self.up)?;
                if self.backlog.is_empty() && !self.down.done {
                    progressed |= self.read_proxy(unix)?;
                }
            }
            Stage::Draining { shut } => {
                let unix = unix.ok_or(())?;
                progressed |= drain_pipe(&mut self.up, unix)?;
                if !shut && !self.up.pending() {
                    // Everything the command sent before the hand-off is with the proxy.
                    // SAFETY: shutdown on a socket the pair owns.
                    unsafe { libc::shutdown(unix, libc::SHUT_WR) };
                    self.stage = Stage::Draining { shut: true };
                    progressed = true;
                } else if shut && proxy_closed(unix)? {
                    self.unix = None;
                    self.stage = Stage::Direct;
                    if self.up.done {
                        // The command had half-closed while talking to the proxy: pass it on.
                        // SAFETY: shutdown on a socket the pair owns.
                        unsafe { libc::shutdown(upstream.ok_or(())?, libc::SHUT_WR) };
                    }
                    progressed = true;
                }
                if self.backlog.is_empty() {
                    progressed |= step(upstream.ok_or(())?, tcp, &mut self.down)?;
                }
            }
            Stage::Direct => {
                let upstream = upstream.ok_or(())?;
                progressed |= step(tcp, upstream, &mut self.up)?;
                progressed |= step(upstream, tcp, &mut self.down)?;
            }
        }
        Ok(progressed)
    }

    /// Before the hand-off: takes one message from the proxy. Plain bytes (a handshake
    /// reply, a refusal) are for the command; descriptors mean the hand-off.
    fn read_proxy(&mut self, unix: RawFd) -> Result<bool, ()> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut buf = [0u8; HANDSHAKE_READ];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let (n, fds) = match recvmsg::<()>(
            unix,
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().map_err(drop)? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        // SAFETY: descriptors just received are ours alone.
                        fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
                (msg.bytes, fds)
            }
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => return Ok(false),
            Err(_) => return Err(()),
        };
        let data = &buf[..n];
        match (fds.len(), data.first()) {
            (0, None) => {
                // The proxy closed without a hand-off (a refusal, already passed on).
                self.down.eof = true;
                self.down.done = true;
                // SAFETY: shutdown on a socket the pair owns.
                unsafe { libc::shutdown(self.tcp.as_raw_fd(), libc::SHUT_WR) };
            }
            (0, Some(_)) => self.backlog.extend_from_slice(data),
            (1, Some(&HANDOFF_MARK)) => {
                self.backlog.extend_from_slice(&data[1..]);
                self.upstream = fds.into_iter().next();
                self.stage = Stage::Draining { shut: false };
            }
            _ => return Err(()),
        }
        Ok(true)
    }

    /// Writes proxy bytes owed to the command, in order, before anything spliced.
    fn flush_backlog(&mut self) -> Result<bool, ()> {
        if self.backlog.is_empty() {
            return Ok(false);
        }
        match (&self.tcp).write(&self.backlog) {
            Ok(n) => {
                self.backlog.drain(..n);
                Ok(n > 0)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => Ok(false),
            Err(_) => Err(()),
        }
    }
}

/// True once the proxy has closed its end (it has forwarded everything it was sent).
fn proxy_closed(unix: RawFd) -> Result<bool, ()> {
    let mut byte = [0u8; 64];
    // SAFETY: recv into a local buffer.
    let n = unsafe { libc::recv(unix, byte.as_mut_ptr().cast(), byte.len(), libc::MSG_DONTWAIT) };
    match n {
        0 => Ok(true),
        n if n > 0 => Ok(false), // nothing is expected; ignore it
        _ => match std::io::Error::last_os_error().kind() {
            ErrorKind::WouldBlock | ErrorKind::Interrupted => Ok(false),
            _ => Err(()),
        },
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

/// Splices what `half` holds out to `to`; `Ok(true)` if anything moved.
fn drain_pipe(half: &mut Half, to: RawFd) -> Result<bool, ()> {
    let (true, Some(pipe)) = (half.pending(), &half.pipe) else { return Ok(false) };
    match splice(pipe.r.as_raw_fd(), to, half.in_pipe).map_err(drop)? {
        Some(n) => {
            half.in_pipe -= n;
            Ok(n > 0)
        }
        None => Ok(false),
    }
}

/// Moves bytes `from` → `to` through `half`; `Ok(true)` if anything happened. At the end
/// of `from`, with everything delivered, the end is passed on as a half-close.
fn step(from: RawFd, to: RawFd, half: &mut Half) -> Result<bool, ()> {
    if half.done {
        return Ok(false);
    }
    let mut progressed = drain_pipe(half, to)?;
    if half.pending() {
        return Ok(progressed);
    }
    if !half.eof {
        let pipe = match &mut half.pipe {
            Some(pipe) => pipe,
            None => half.pipe.insert(Pipe::new()?),
        };
        match splice(from, pipe.w.as_raw_fd(), pipe.capacity).map_err(drop)? {
            Some(0) => half.eof = true,
            Some(n) => {
                if n >= pipe.capacity {
                    pipe.grow();
                }
                half.in_pipe += n;
                return Ok(true);
            }
            None => {
                // Empty, and nothing more to move for now.
                half.pipe = None;
                return Ok(progressed);
            }
        }
    }
    half.pipe = None;
    half.done = true;
    progressed = true;
    // SAFETY: shutdown on a descriptor the pair owns.
    unsafe { libc::shutdown(to, libc::SHUT_WR) };
    Ok(progressed)
}
